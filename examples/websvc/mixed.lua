-- wrk script: a mixed request pattern for websvc
--   wrk -t2 -c50 -d30s --latency -s mixed.lua http://127.0.0.1:8000
-- 40% item lookups, 20% searches, 5% the CPU-heavier /report, 15% session
-- creations, 20% session reads (of sessions this thread created).
local words = {"oak", "steel", "lamp", "mug", "red", "garden", "chair", "vase"}
local sids = {}
local nsids = 0
local counter = 0

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
    return wrk.format("POST", "/sessions", {["Content-Type"] = "application/json"},
                      '{"user": "u' .. counter .. '", "ttl": 20, "data": {"cart": [1, 2, 3]}}')
  else
    return wrk.format("GET", "/sessions/" .. sids[math.random(nsids)])
  end
end

function response(status, headers, body)
  if status == 201 then
    local sid = body:match('"sid":"(%x+)"')
    if sid then
      if nsids < 1000 then
        nsids = nsids + 1
        sids[nsids] = sid
      else
        sids[math.random(nsids)] = sid
      end
    end
  end
end
