-- Portcullis - MIT licence. See LICENSE.
--
-- gateway.lua: wrk script for bench/gateway_bench.py. Every scenario of that
-- bench (the upstream hit directly, nginx, the gateway) runs through this one
-- script, so the client does the same work per request everywhere.
--
-- Environment:
--   BENCH_TABLE   file of "<cumulative probability>\t<header value>" lines,
--                 ascending, the last one 1.0 (written by gateway_bench.py).
--                 One line: every request carries that value. Many lines: a
--                 precomputed Zipf table; each request draws u in [0,1) and
--                 takes the first line whose cumulative probability is > u
--                 (binary search), so line k is chosen with probability
--                 p(k) = k^-s / sum(j^-s).
--   BENCH_HEADER  the header the value goes in (x-api-key, Cookie, ...)
--   BENCH_PATH    request path (default /bench)
--   BENCH_EXTRA_HEADER  optional "Name: value" sent with every request as
--                 well (forward auth: "X-Original-URI: /bench")
--   BENCH_SEED    random seed (each thread adds its own number)
--
-- Requests are formatted once in init() (one string per table line), so
-- request() costs a random draw, a search and a table lookup. Responses are
-- counted per HTTP status; with a table of more than one line each thread also
-- records which lines it sent. done() prints one machine-readable line:
--   GATEWAY_RESULT {"duration_us":..., "requests":..., "bytes":...,
--                   "status":{"200":n,...}, "errors":{...}, "latency_us":{...},
--                   "distinct":d}

local table_path = os.getenv("BENCH_TABLE") or error("BENCH_TABLE not set")
local header = os.getenv("BENCH_HEADER") or error("BENCH_HEADER not set")
local path = os.getenv("BENCH_PATH") or "/bench"
local extra_name, extra_value = (os.getenv("BENCH_EXTRA_HEADER") or ""):match("^([^:]+):%s*(.*)$")
local seed = tonumber(os.getenv("BENCH_SEED") or "1")

local threads = {}
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("thread_no", nthreads)
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua environment).
counts = {}
seen = {}
ndistinct = 0
local cdf = {}
local reqs = {}
local n = 0

function init(args)
   for line in io.lines(table_path) do
      local c, v = line:match("^([^\t]+)\t(.*)$")
      if c then
         n = n + 1
         cdf[n] = tonumber(c)
         local h = {}
         h[header] = v
         if extra_name then
            h[extra_name] = extra_value
         end
         reqs[n] = wrk.format("GET", path, h)
      end
   end
   if n == 0 then
      error("BENCH_TABLE " .. table_path .. " has no lines")
   end
   math.randomseed(seed * 7919 + (thread_no or 0) * 104729)
end

local function pick()
   local u = math.random()
   local lo, hi = 1, n
   while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] > u then hi = mid else lo = mid + 1 end
   end
   return lo
end

function request()
   if n == 1 then
      return reqs[1]
   end
   local i = pick()
   if not seen[i] then
      seen[i] = true
      ndistinct = ndistinct + 1
   end
   return reqs[i]
end

function response(status, headers, body)
   local k = tostring(status)
   counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   local union = {}
   local distinct = 0
   for _, t in ipairs(threads) do
      local c = t:get("counts")
      for k, v in pairs(c) do
         total[k] = (total[k] or 0) + v
      end
      local s = t:get("seen")
      for k, _ in pairs(s) do
         if not union[k] then
            union[k] = true
            distinct = distinct + 1
         end
      end
   end
   local parts = {}
   for k, v in pairs(total) do
      table.insert(parts, string.format('"%s":%d', k, v))
   end
   local e = summary.errors
   io.write(string.format(
      'GATEWAY_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,"status":{%s},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.0f},"distinct":%d}\n',
      summary.duration, summary.requests, summary.bytes, table.concat(parts, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean, distinct))
end
