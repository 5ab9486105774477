-- A mix of GET requests: each request is a line drawn at random from a file of paths
-- (e.g. /fhir/Condition?patient=...&clinical-status=active), as bench/network.py writes them.
-- wrk -s bench/urls.lua http://127.0.0.1:8080 -- <paths file>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local paths

function init(args)
  paths = load_ids(args[1])
  seed_random()
  wrk.headers["Accept"] = "application/fhir+json"
  use_token()
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
