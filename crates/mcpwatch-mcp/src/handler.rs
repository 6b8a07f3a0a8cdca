//! [`Metered`]: an rmcp `ServerHandler` around the server's own, which times every request
//! the handler answers and forwards everything else unchanged.
//!
//! Why the handler and not only an HTTP layer: the handler sees each request after rmcp
//! has parsed it (method, tool name, protocol revision) and each answer before it is
//! encoded (a JSON-RPC error code, a tool result's `isError`), on every transport and in
//! both eras, with no body to buffer or re-parse. What never reaches the handler (a
//! request refused by the HTTP transport before dispatch) is counted by
//! [`crate::McpHttpLayer`] from the status and error body of the refusal.

#![allow(deprecated)] // resources/subscribe and unsubscribe: legacy methods, still forwarded.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CancelledNotificationParam,
    CompleteRequestParams, CompleteResult, CustomNotification, CustomRequest, CustomResult,
    DiscoverResult, GetPromptRequestParams, GetPromptResponse, GetSkillRequestParams,
    GetSkillResult, GetTaskParams, GetTaskResult, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListSkillsResult,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
    ReadResourceDirectoryRequestParams, ReadResourceDirectoryResult, ReadResourceRequestParams,
    ReadResourceResponse, ServerConfig, SetLevelRequestParams, SubscribeRequestParams,
    SubscriptionFilter, Tool, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::Shared;
use crate::semconv::{self, Outcome, TOOLS_CALL, VERSIONS};
use crate::table::{InFlight, Key, OperationTable};

/// The JSON-RPC codes rmcp's HTTP transport answers with an error status on a 2026-07-28
/// request (404 for -32601; 400 for -32020, -32021, -32022).
const STATUS_CODES: [i32; 4] = [-32601, -32020, -32021, -32022];

/// The `_meta` key of a 2026-07-28 request's protocol revision.
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The method indices in [`semconv::METHODS`] of what [`Metered`] times.
mod method {
    use crate::semconv::index_of;

    pub const DISCOVER: usize = index_of("server/discover");
    pub const INITIALIZE: usize = index_of("initialize");
    pub const PING: usize = index_of("ping");
    pub const TOOLS_LIST: usize = index_of("tools/list");
    pub const PROMPTS_LIST: usize = index_of("prompts/list");
    pub const RESOURCES_LIST: usize = index_of("resources/list");
    pub const RESOURCES_TEMPLATES_LIST: usize = index_of("resources/templates/list");
    pub const RESOURCES_READ: usize = index_of("resources/read");
    pub const RESOURCES_DIRECTORY_READ: usize = index_of("resources/directory/read");
    pub const RESOURCES_SUBSCRIBE: usize = index_of("resources/subscribe");
    pub const RESOURCES_UNSUBSCRIBE: usize = index_of("resources/unsubscribe");
    pub const COMPLETE: usize = index_of("completion/complete");
    pub const SET_LEVEL: usize = index_of("logging/setLevel");
    pub const TASKS_GET: usize = index_of("tasks/get");
    pub const TASKS_UPDATE: usize = index_of("tasks/update");
    pub const TASKS_CANCEL: usize = index_of("tasks/cancel");
    pub const SKILLS_LIST: usize = index_of("skills/list");
    pub const SKILLS_GET: usize = index_of("skills/get");
}

/// A server handler whose requests are timed into an [`crate::McpMetrics`]. Made by
/// [`crate::McpMetrics::wrap`]; cheap to make per session or per request, as rmcp's
/// service factory does.
#[derive(Debug)]
pub struct Metered<H> {
    inner: H,
    shared: Arc<Shared>,
    /// The revision a legacy session negotiated in `initialize` (an index in
    /// [`semconv::VERSIONS`]), for its later requests that carry none.
    negotiated: AtomicUsize,
}

impl<H: Clone> Clone for Metered<H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            negotiated: AtomicUsize::new(self.negotiated.load(Ordering::Relaxed)),
        }
    }
}

impl<H> Metered<H> {
    pub(crate) fn new(inner: H, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            negotiated: AtomicUsize::new(usize::MAX),
        }
    }

    /// The server's own handler.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// Where a request is counted: its method, tool or prompt, and revision (its own
    /// `_meta`'s, else the one its session negotiated); and whether the layer counts its
    /// errors that rmcp answers with a status of their own (a 2026-07-28 request, with the
    /// layer made: one [`crate::McpMetrics`] per HTTP endpoint, see its `layer`).
    fn key(
        &self,
        method: usize,
        name: Option<&str>,
        context: &RequestContext<RoleServer>,
    ) -> (Key, bool) {
        let own = context
            .meta
            .get(META_VERSION)
            .and_then(serde_json::Value::as_str);
        let layered = own.is_some_and(|v| v >= semconv::MODERN)
            && self.shared.layered.load(Ordering::Relaxed);
        let version = own.or_else(|| {
            VERSIONS
                .get(self.negotiated.load(Ordering::Relaxed))
                .copied()
        });
        (self.shared.table.key_of(method, name, version), layered)
    }

    /// The answer `answer` makes, timed and counted in flight from before it is made (a
    /// handler may do its work there and return a ready future), its outcome recorded
    /// when it ends.
    fn timed<'a, T: 'a, F>(
        &'a self,
        (key, layered): (Key, bool),
        answer: impl FnOnce() -> F,
        failed: fn(&T) -> bool,
    ) -> Timed<'a, F, impl FnOnce(&Result<T, McpError>, Duration) + 'a>
    where
        F: Future<Output = Result<T, McpError>>,
    {
        let table = &self.shared.table;
        Timed::new(
            table,
            key.method(),
            answer,
            move |result: &Result<T, McpError>, elapsed| {
                let outcome = match result {
                    Ok(value) if failed(value) => Outcome::ToolError,
                    Ok(_) => Outcome::Ok,
                    // rmcp answers these with 404 or 400 on a 2026-07-28 request over HTTP:
                    // the layer, when there is one, counts them with the transport's own
                    // refusals.
                    Err(e) if layered && STATUS_CODES.contains(&e.code.0) => return,
                    Err(e) => Outcome::Code(i64::from(e.code.0)),
                };
                table.observe(key, outcome, elapsed);
            },
        )
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, timed from when it is made to when it ends, and counted in
    /// flight meanwhile. Written out rather than as an `async fn` around the handler's
    /// future: an `async fn` keeps its arguments beside the future it awaits, so each
    /// layer would double the size of the future rmcp moves and spawns for every request.
    struct Timed<'a, F, R> {
        #[pin]
        answer: F,
        started: Instant,
        in_flight: Option<InFlight<'a>>,
        record: Option<R>,
    }
}

impl<'a, F, R> Timed<'a, F, R> {
    /// Starts the clock and counts the request in flight, then has `answer` make the
    /// handler's future.
    fn new(
        table: &'a OperationTable,
        method: usize,
        answer: impl FnOnce() -> F,
        record: R,
    ) -> Self {
        let started = Instant::now();
        let in_flight = Some(table.in_flight(method));
        Self {
            answer: answer(),
            started,
            in_flight,
            record: Some(record),
        }
    }
}

impl<F, T, R> Future for Timed<'_, F, R>
where
    F: Future<Output = Result<T, McpError>>,
    R: FnOnce(&Result<T, McpError>, Duration),
{
    type Output = Result<T, McpError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.answer.poll(cx));
        if let Some(record) = this.record.take() {
            record(&result, this.started.elapsed());
        }
        *this.in_flight = None;
        Poll::Ready(result)
    }
}

fn never<T>(_: &T) -> bool {
    false
}

macro_rules! timed_with_params {
    ($name:ident, $method:expr, $params:ty, $result:ty) => {
        fn $name(
            &self,
            request: $params,
            context: RequestContext<RoleServer>,
        ) -> impl Future<Output = Result<$result, McpError>> + MaybeSendFuture + '_ {
            let key = self.key($method, None, &context);
            self.timed(key, || self.inner.$name(request, context), never)
        }
    };
}

macro_rules! timed_without_params {
    ($name:ident, $method:expr, $result:ty) => {
        fn $name(
            &self,
            context: RequestContext<RoleServer>,
        ) -> impl Future<Output = Result<$result, McpError>> + MaybeSendFuture + '_ {
            let key = self.key($method, None, &context);
            self.timed(key, || self.inner.$name(context), never)
        }
    };
}

impl<H: ServerHandler> ServerHandler for Metered<H> {
    timed_without_params!(ping, method::PING, ());
    timed_without_params!(discover, method::DISCOVER, DiscoverResult);
    timed_with_params!(
        complete,
        method::COMPLETE,
        CompleteRequestParams,
        CompleteResult
    );
    timed_with_params!(set_level, method::SET_LEVEL, SetLevelRequestParams, ());
    timed_with_params!(
        list_prompts,
        method::PROMPTS_LIST,
        Option<PaginatedRequestParams>,
        ListPromptsResult
    );
    timed_with_params!(
        list_resources,
        method::RESOURCES_LIST,
        Option<PaginatedRequestParams>,
        ListResourcesResult
    );
    timed_with_params!(
        list_resource_templates,
        method::RESOURCES_TEMPLATES_LIST,
        Option<PaginatedRequestParams>,
        ListResourceTemplatesResult
    );
    timed_with_params!(
        read_resource,
        method::RESOURCES_READ,
        ReadResourceRequestParams,
        ReadResourceResponse
    );
    timed_with_params!(
        subscribe,
        method::RESOURCES_SUBSCRIBE,
        SubscribeRequestParams,
        ()
    );
    timed_with_params!(
        unsubscribe,
        method::RESOURCES_UNSUBSCRIBE,
        UnsubscribeRequestParams,
        ()
    );
    timed_with_params!(
        list_tools,
        method::TOOLS_LIST,
        Option<PaginatedRequestParams>,
        ListToolsResult
    );
    timed_with_params!(get_task, method::TASKS_GET, GetTaskParams, GetTaskResult);
    timed_with_params!(update_task, method::TASKS_UPDATE, UpdateTaskParams, ());
    timed_with_params!(cancel_task, method::TASKS_CANCEL, CancelTaskParams, ());
    timed_with_params!(
        list_skills,
        method::SKILLS_LIST,
        Option<PaginatedRequestParams>,
        ListSkillsResult
    );
    timed_with_params!(
        get_skill,
        method::SKILLS_GET,
        GetSkillRequestParams,
        GetSkillResult
    );
    timed_with_params!(
        read_resource_directory,
        method::RESOURCES_DIRECTORY_READ,
        ReadResourceDirectoryRequestParams,
        ReadResourceDirectoryResult
    );

    fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<InitializeResult, McpError>> + MaybeSendFuture + '_ {
        Timed::new(
            &self.shared.table,
            method::INITIALIZE,
            || self.inner.initialize(request, context),
            move |result: &Result<InitializeResult, McpError>, elapsed| {
                // Counted under the revision it settled on, which the session's later
                // requests carry too.
                let version = result.as_ref().ok().map(|r| r.protocol_version.as_str());
                if let Some(v) = version {
                    let index = semconv::version_index(Some(v));
                    self.negotiated.store(index, Ordering::Relaxed);
                }
                let table = &self.shared.table;
                let key = table.key_of(method::INITIALIZE, None, version);
                let outcome = match result {
                    Ok(_) => Outcome::Ok,
                    Err(e) => Outcome::Code(i64::from(e.code.0)),
                };
                table.observe(key, outcome, elapsed);
            },
        )
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<GetPromptResponse, McpError>> + MaybeSendFuture + '_ {
        let key = self.key(semconv::PROMPTS_GET, Some(&request.name), &context);
        self.timed(key, || self.inner.get_prompt(request, context), never)
    }

    fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CallToolResponse, McpError>> + MaybeSendFuture + '_ {
        let key = self.key(TOOLS_CALL, Some(&request.name), &context);
        self.timed(
            key,
            || self.inner.call_tool(request, context),
            |r| matches!(r, CallToolResponse::Complete(result) if result.is_error == Some(true)),
        )
    }

    fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<CustomResult, McpError>> + MaybeSendFuture + '_ {
        let method = semconv::method_index(&request.method);
        let key = self.key(method, None, &context);
        self.timed(
            key,
            || self.inner.on_custom_request(request, context),
            never,
        )
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.inner.accepted_subscription_filter(requested)
    }

    fn listen(
        &self,
        context: SubscriptionContext,
    ) -> impl Future<Output = Result<(), McpError>> + MaybeSendFuture + '_ {
        // A subscription lasts as long as the client listens: its length is no operation's
        // duration, and is not timed.
        self.inner.listen(context)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.inner.get_tool(name)
    }

    fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_cancelled(notification, context)
    }

    fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_progress(notification, context)
    }

    fn on_initialized(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_initialized(context)
    }

    fn on_roots_list_changed(
        &self,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_roots_list_changed(context)
    }

    fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl Future<Output = ()> + MaybeSendFuture + '_ {
        self.inner.on_custom_notification(notification, context)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }
}
