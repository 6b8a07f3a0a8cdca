-- wrk script: POST Alertmanager webhook payloads (the file named by the environment
-- variable PAYLOAD) to the notifier, each with a group key of its own so that none is a
-- duplicate: "__KEY__" in the payload is replaced per request. The payload is split once
-- around its first "__KEY__", so a request costs a concatenation, not a search.
local counter = 0
local thread_id = 0
local head, tail

function setup(thread)
    thread_id = thread_id + 1
    thread:set("id", thread_id)
end

function init(args)
    local f = assert(io.open(os.getenv("PAYLOAD"), "r"))
    local template = f:read("*a")
    f:close()
    local at = assert(template:find("__KEY__", 1, true), "no __KEY__ in the payload")
    head = template:sub(1, at - 1)
    tail = template:sub(at + 7)
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    if os.getenv("TOKEN") then
        wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
    end
end

function request()
    counter = counter + 1
    return wrk.format(nil, "/webhook", nil, head .. id .. "-" .. counter .. tail)
end
