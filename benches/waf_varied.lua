-- wrk script for benches/waf_vs_modsecurity.sh: requests whose argument values and session
-- cookie change with every request, as real users' do (the WAF's value memo cannot have seen
-- them), beside browser headers that repeat. WAF_SCENARIO=get: a GET with four query
-- arguments; WAF_SCENARIO=form: a 4 KB URL-encoded POST of 72 fields.
local scenario = os.getenv("WAF_SCENARIO") or "get"
local sorts = { "name", "date", "ward", "id", "age", "status" }
local n = 0
local headers = {
  ["Host"] = "portal.example.jp",
  ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0",
  ["Accept"] = "text/html,application/xhtml+xml",
  ["Accept-Language"] = "ja,en;q=0.5",
  ["Content-Type"] = "application/x-www-form-urlencoded",
}

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local function form()
  local f = {}
  for i = 0, 71 do
    f[#f + 1] = string.format("field_%02d=patient+record+%d+claim+code+A%05d+2026-12-%02d",
      i, math.random(1, 99999), math.random(0, 99999), math.random(1, 28))
  end
  return table.concat(f, "&")
end

function request()
  n = n + 1
  headers["Cookie"] = string.format("session=%08x%08x; lang=ja", math.random(0, 0x7fffffff), n)
  if scenario == "form" then
    local body = form()
    headers["Content-Length"] = tostring(#body)
    return wrk.format("POST", "/claims/submit", headers, body)
  end
  headers["Content-Length"] = nil
  local path = string.format("/portal/patients/list?page=%d&sort=%s&ward=%d&id=%d",
    math.random(1, 500), sorts[math.random(#sorts)], math.random(1, 40), math.random(1, 9999999))
  return wrk.format("GET", path, headers)
end
