-- Create: POST /fhir/Observation with a coded vital-signs Observation (LOINC + SNOMED CT,
-- UCUM units) about a Patient drawn at random from the seeded ones. Each request is a new
-- resource: a mix of heart rate, body weight and a blood pressure panel with components.
-- wrk -s bench/create.lua http://127.0.0.1:8080 -- <ids file>
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local ids
local headers = {
  ["Content-Type"] = "application/fhir+json",
  ["Accept"] = "application/fhir+json",
}

local CATEGORY = '"category":[{"coding":[{"system":'
  .. '"http://terminology.hl7.org/CodeSystem/observation-category",'
  .. '"code":"vital-signs","display":"Vital Signs"}]}]'

local function coding(loinc, snomed, display)
  return string.format('{"coding":[{"system":"http://loinc.org","code":"%s","display":"%s"},'
    .. '{"system":"http://snomed.info/sct","code":"%s","display":"%s"}],"text":"%s"}',
    loinc, display, snomed, display, display)
end

local function quantity(value, unit, code)
  return string.format('{"value":%s,"unit":"%s","system":"http://unitsofmeasure.org",'
    .. '"code":"%s"}', value, unit, code)
end

local HEART_RATE = coding("8867-4", "364075005", "Heart rate")
local WEIGHT = coding("29463-7", "27113001", "Body weight")
local BP = coding("85354-9", "75367002", "Blood pressure panel")
local SYSTOLIC = coding("8480-6", "271649006", "Systolic blood pressure")
local DIASTOLIC = coding("8462-4", "271650006", "Diastolic blood pressure")

local function observation()
  local when = string.format("2026-%02d-%02dT%02d:%02d:00Z", math.random(1, 12),
    math.random(1, 28), math.random(7, 19), math.random(0, 59))
  local head = string.format('{"resourceType":"Observation","status":"final",%s,'
    .. '"subject":{"reference":"Patient/%s"},"effectiveDateTime":"%s","issued":"%s",',
    CATEGORY, ids[math.random(#ids)], when, when)
  local kind = math.random(3)
  if kind == 1 then
    return head .. '"code":' .. HEART_RATE .. ',"valueQuantity":'
      .. quantity(math.random(48, 120), "beats/minute", "/min") .. "}"
  elseif kind == 2 then
    return head .. '"code":' .. WEIGHT .. ',"valueQuantity":'
      .. quantity(string.format("%.1f", 40 + math.random() * 80), "kg", "kg") .. "}"
  end
  return head .. '"code":' .. BP .. ',"component":['
    .. '{"code":' .. SYSTOLIC .. ',"valueQuantity":'
    .. quantity(math.random(95, 180), "mmHg", "mm[Hg]") .. "},"
    .. '{"code":' .. DIASTOLIC .. ',"valueQuantity":'
    .. quantity(math.random(55, 110), "mmHg", "mm[Hg]") .. "}]}"
end

function init(args)
  ids = load_ids(args[1])
  seed_random()
  local token = os.getenv("BENCH_TOKEN")  -- this script passes its own headers
  if token and token ~= "" then
    headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  return wrk.format("POST", "/fhir/Observation", headers, observation())
end
