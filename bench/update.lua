-- Update: PUT /fhir/Observation/{id}, a new version of an existing Observation (id drawn at
-- random from a file of ids), its value changed. wrk -s bench/update.lua URL -- <ids file>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local ids

function init(args)
  ids = load_ids(args[1])
  seed_random()
  use_token()
  wrk.headers["Accept"] = "application/fhir+json"
  wrk.headers["Content-Type"] = "application/fhir+json"
end

function request()
  local line = ids[math.random(#ids)]
  local id, patient = line:match("^([^ ]+) ([^ ]+)$")
  local body = string.format(
    '{"resourceType":"Observation","id":"%s","status":"amended",' ..
    '"code":{"coding":[{"system":"http://snomed.info/sct","code":"27113001","display":"Body weight"}]},' ..
    '"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2025-05-%02dT09:00:00Z",' ..
    '"valueQuantity":{"value":%d.%d,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}}',
    id, patient, math.random(1, 28), math.random(40, 120), math.random(0, 9))
  return wrk.format("PUT", "/fhir/Observation/" .. id, nil, body)
end
