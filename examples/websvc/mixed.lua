-- wrk script: a mixed request pattern for websvc
--   wrk -t2 -c50 -d30s --latency -s mixed.lua http://127.0.0.1:8000
-- 40% item lookups, 20% searches, 5% the CPU-heavier /report, 15% session
-- creations, 20% session reads (of sessions this thread created).
-- Half the sessions created live 5 s (work for the expiry task), the other
-- half 600 s: only those are read back, so that a read never finds an
-- expired session.  Under gunicorn a read may reach the worker that did not
-- create the session (sessions are per worker): a 404, counted apart and
-- printed at the end as "Session reads 404: N".
local words = {"oak", "steel", "lamp", "mug", "red", "garden", "chair", "vase"}
local sids = {}
local nsids = 0
local counter = 0
session_misses = 0  -- a global: done() reads it from each thread
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  counter = counter + 1
  local r = math.random(100)
  if r <= 40 then
    return wrk.format("GET", "/items/" .. math.random(0, 4999))
  elseif r <= 60 then
    return wrk.format("GET", "/items?limit=10&q=" .. words[math.random(#words)])
  elseif r <= 65 then
    return wrk.format("GET", "/report")
  elseif r <= 80 or nsids == 0 then
    local ttl = (counter % 2 == 0) and 600 or 5
    return wrk.format("POST", "/sessions", {["Content-Type"] = "application/json"},
                      '{"user": "u' .. counter .. '", "ttl": ' .. ttl ..
                      ', "data": {"cart": [1, 2, 3]}}')
  else
    return wrk.format("GET", "/sessions/" .. sids[math.random(nsids)])
  end
end

function response(status, headers, body)
  if status == 404 and body:find("no such session", 1, true) then
    session_misses = session_misses + 1
  end
  if status == 201 and body:find('"expires"', 1, true) then
    local sid = body:match('"sid":"(%x+)"')
    local created, expires = body:match('"created":([%d.e+]+),"expires":([%d.e+]+)')
    if sid and created and tonumber(expires) - tonumber(created) > 60 then
      if nsids < 1000 then
        nsids = nsids + 1
        sids[nsids] = sid
      else
        sids[math.random(nsids)] = sid
      end
    end
  end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (t:get("session_misses") or 0)
  end
  io.write(string.format("Session reads 404: %d\n", n))
end
