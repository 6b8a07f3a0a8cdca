-- wrk script: one 2026-07-28 tools/call per request (stateless: no session), calling the
-- tool named by the environment variable TOOL (default "add") of an MCP server's
-- Streamable HTTP endpoint, with the headers the revision requires.
local tool = os.getenv("TOOL") or "add"

function init(args)
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Accept"] = "application/json, text/event-stream"
    wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
    wrk.headers["Mcp-Method"] = "tools/call"
    wrk.headers["Mcp-Name"] = tool
    wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. tool ..
        '","arguments":{"a":2,"b":3},"_meta":{' ..
        '"io.modelcontextprotocol/protocolVersion":"2026-07-28",' ..
        '"io.modelcontextprotocol/clientCapabilities":{},' ..
        '"io.modelcontextprotocol/clientInfo":{"name":"wrk","version":"1"}}}}'
end

function response(status, headers, body)
    if status ~= 200 or not body:find('"result"', 1, true) then
        error("unexpected answer " .. status .. ": " .. body)
    end
end
