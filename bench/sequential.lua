-- Portcullis - MIT licence. See LICENSE.
--
-- sequential.lua: wrk script for bench/cold_keys_bench.py. Every request
-- carries the next value of a file, and no value is sent twice while they
-- last: thread t of T sends lines t, t+T, t+2T, ..., so a run measures
-- credentials that no cache has seen.
--
-- Environment:
--   BENCH_TABLE   file of one header value per line
--   BENCH_HEADER  the header the value goes in (x-api-key, ...)
--   BENCH_PATH    request path (default /bench)
--   BENCH_THREADS wrk's -t (how the lines are shared out)
--
-- wrk runs for its -d whatever the script does (thread:stop() does not end
-- the run early), so the file must hold more lines than the run can send: a
-- request after a thread's share is used up carries the share's last line
-- again and is counted in "repeats" (the bench counts only the others).
-- done() prints:
--   SEQ_RESULT {"duration_us":..., "requests":..., "repeats":...,
--               "status":{"200":n,...}, "errors":{...}, "latency_us":{...}}

local table_path = os.getenv("BENCH_TABLE") or error("BENCH_TABLE not set")
local header = os.getenv("BENCH_HEADER") or error("BENCH_HEADER not set")
local path = os.getenv("BENCH_PATH") or "/bench"
local nthreads_total = tonumber(os.getenv("BENCH_THREADS") or "") or error("BENCH_THREADS not set")

local threads = {}
local nthreads = 0

function setup(thread)
   nthreads = nthreads + 1
   thread:set("thread_no", nthreads)
   table.insert(threads, thread)
end

counts = {}
repeats = 0
local reqs = {}
local n = 0
local next_i = 1

function init(args)
   local t, i = thread_no or 1, 0
   for line in io.lines(table_path) do
      i = i + 1
      if (i - t) % nthreads_total == 0 then
         local h = {}
         h[header] = line
         n = n + 1
         reqs[n] = wrk.format("GET", path, h)
      end
   end
   if n == 0 then
      error("no values for thread " .. t)
   end
end

function request()
   if next_i > n then
      repeats = repeats + 1
      return reqs[n]
   end
   local r = reqs[next_i]
   next_i = next_i + 1
   return r
end

function response(status, headers, body)
   local k = tostring(status)
   counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
   local total, rep = {}, 0
   for _, t in ipairs(threads) do
      for k, v in pairs(t:get("counts")) do
         total[k] = (total[k] or 0) + v
      end
      rep = rep + t:get("repeats")
   end
   local parts = {}
   for k, v in pairs(total) do
      table.insert(parts, string.format('"%s":%d', k, v))
   end
   local e = summary.errors
   io.write(string.format(
      'SEQ_RESULT {"duration_us":%d,"requests":%d,"repeats":%d,"status":{%s},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
      summary.duration, summary.requests, rep, table.concat(parts, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
