-- wrk script: cycle through a request list, then print the summary as one JSON line.
--
-- Usage: wrk ... -s cycle.lua URL -- REQUEST_LIST
-- REQUEST_LIST has one request per line: a path, then optional TAB-separated
-- "Name: value" headers (e.g. a per-device User-Agent). Empty lines and lines starting
-- with "#" are skipped. Headers given with wrk -H (Connection: close) apply to all.
--
-- Requests are formatted once in init(): formatting per request costs client CPU, and
-- with new TLS connections the single wrk thread is already the bottleneck.
--
-- An optional second argument, PAUSE_MS, makes each connection wait a random time
-- (exponential, mean PAUSE_MS) after a response before its next request: N connections
-- then offer about N / PAUSE_MS requests a millisecond, arriving independently like
-- phones do, instead of the saturating closed loop. wrk measures latency from the moment
-- a request is written, so the pause is not counted. Without it no delay() is defined:
-- wrk then takes its cheaper path with no timer per request.

local requests = {}
local index = 0
local threads_set_up = 0

-- Runs in the main Lua state; thread:set makes "thread_id" a global of that thread's state.
function setup(thread)
  thread:set("thread_id", threads_set_up)
  threads_set_up = threads_set_up + 1
end

local function parse_line(line)
  local path, headers = nil, {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  for field in line:gmatch("[^\t]+") do
    if path == nil then
      path = field
    else
      local name, value = field:match("^([^:]+):%s*(.*)$")
      assert(name, "bad header field: " .. field)
      headers[name] = value
    end
  end
  return wrk.format(nil, path, headers)
end

function init(args)
  local file = assert(io.open(assert(args[1], "request list file missing"), "r"))
  for line in file:lines() do
    if line ~= "" and line:sub(1, 1) ~= "#" then
      requests[#requests + 1] = parse_line(line)
    end
  end
  file:close()
  assert(#requests > 0, "request list is empty")
  -- Threads start at different places so they do not request the same file in step.
  index = (thread_id or 0) * 7919 % #requests
  local pause_ms = tonumber(args[2] or "")
  if pause_ms and pause_ms > 0 then
    math.randomseed(1 + (thread_id or 0))
    -- wrk reads the global after init() to decide whether requests are delayed.
    function delay()
      return math.floor(-math.log(1 - math.random()) * pause_ms + 0.5)
    end
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
