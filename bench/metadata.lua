-- Baseline: GET /fhir/metadata (a cached CapabilityStatement: routing and HTTP, no database).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

function init(args)
  wrk.headers["Accept"] = "application/fhir+json"
end

function request()
  return wrk.format("GET", "/fhir/metadata")
end
