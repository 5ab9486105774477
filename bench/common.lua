-- Shared by the wrk scripts: per-thread status counting and a done() that prints one line
-- "BENCH_JSON {...}" for bench/run.py to parse. wrk runs this file in its main Lua state and
-- in one state per thread; setup() and done() run in the main state, response() in threads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

-- Per thread (globals of the thread's state, read back in done() with thread:get).
ok2xx = 0
non2xx = 0
statuses = {}
sample = ""

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  else
    non2xx = non2xx + 1
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if sample == "" and body then
      sample = string.sub(body, 1, 400)
    end
  end
end

local function encode(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, encode(tostring(k)) .. ":" .. encode(v))
    end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    local escaped = value:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", string.byte(c))
    end)
    return '"' .. escaped .. '"'
  elseif kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return string.format("%.17g", value)
  elseif kind == "boolean" then
    return tostring(value)
  end
  return "null"
end

function done(summary, latency, requests)
  local ok, bad, codes, first = 0, 0, {}, ""
  for _, thread in ipairs(threads) do
    ok = ok + (thread:get("ok2xx") or 0)
    bad = bad + (thread:get("non2xx") or 0)
    for code, n in pairs(thread:get("statuses") or {}) do
      codes[code] = (codes[code] or 0) + n
    end
    local s = thread:get("sample") or ""
    if first == "" then first = s end
  end
  local ms = function(us) return us / 1000.0 end
  local out = {
    requests = summary.requests,
    duration_s = summary.duration / 1e6,
    bytes = summary.bytes,
    requests_per_s = summary.requests / (summary.duration / 1e6),
    errors = {
      connect = summary.errors.connect,
      read = summary.errors.read,
      write = summary.errors.write,
      status = summary.errors.status,
      timeout = summary.errors.timeout,
    },
    ok2xx = ok,
    non2xx = bad,
    statuses = codes,
    non2xx_sample = first,
    latency_ms = {
      mean = ms(latency.mean),
      stdev = ms(latency.stdev),
      min = ms(latency.min),
      max = ms(latency.max),
      p50 = ms(latency:percentile(50)),
      p90 = ms(latency:percentile(90)),
      p95 = ms(latency:percentile(95)),
      p99 = ms(latency:percentile(99)),
      p999 = ms(latency:percentile(99.9)),
    },
  }
  io.write("BENCH_JSON " .. encode(out) .. "\n")
end

-- Each thread seeds its own generator, so threads do not replay the same sequence.
function seed_random()
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919)
  for _ = 1, 10 do math.random() end
end

-- One id per line (the seeded Patients), read in every thread's init().
function load_ids(path)
  local ids = {}
  for line in io.lines(path) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  if #ids == 0 then error("no ids in " .. path) end
  return ids
end

-- The bearer token the harness passes in BENCH_TOKEN (the server asks for one on every FHIR
-- request but /metadata); call from init().
function use_token()
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end
