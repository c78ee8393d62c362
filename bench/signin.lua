-- Portcullis - MIT licence. See LICENSE.
--
-- signin.lua: wrk script for bench/signin_storm.py. Every request is
--   POST /api/auth/sign-in/email  {"email": ..., "password": ...}
-- for one existing user (SIGNIN_EMAIL, SIGNIN_PASSWORD from the environment;
-- plain ASCII without quotes or backslashes). Responses are counted per HTTP
-- status in every wrk thread; done() prints one machine-readable line:
--   SIGNIN_RESULT {"duration_us":..., "status":{"200":n,"503":m}, "errors":{...}, ...}

local email = os.getenv("SIGNIN_EMAIL") or error("SIGNIN_EMAIL not set")
local password = os.getenv("SIGNIN_PASSWORD") or error("SIGNIN_PASSWORD not set")

wrk.method = "POST"
wrk.path = "/api/auth/sign-in/email"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"' .. email .. '","password":"' .. password .. '"}'

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua environment).
counts = {}

function response(status, headers, body)
   local k = tostring(status)
   counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      local c = t:get("counts")
      for k, v in pairs(c) do
         total[k] = (total[k] or 0) + v
      end
   end
   local parts = {}
   for k, v in pairs(total) do
      table.insert(parts, string.format('"%s":%d', k, v))
   end
   local e = summary.errors
   io.write(string.format(
      'SIGNIN_RESULT {"duration_us":%d,"requests":%d,"status":{%s},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p99":%d,"max":%d,"mean":%.0f}}\n',
      summary.duration, summary.requests, table.concat(parts, ","),
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
