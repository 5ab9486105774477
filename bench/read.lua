-- Read by id: GET /fhir/Patient/{id}, the id drawn at random from the seeded Patients.
-- wrk -s bench/read.lua http://127.0.0.1:8080 -- <ids file>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local ids

function init(args)
  ids = load_ids(args[1])
  seed_random()
  use_token()
  wrk.headers["Accept"] = "application/fhir+json"
end

function request()
  return wrk.format("GET", "/fhir/Patient/" .. ids[math.random(#ids)])
end
