-- wrk script: every request is a distinct, validly signed Avasam webhook body.
-- args: TOKENS_FILE (lines "requestId<TAB>jwt"), DATA_FILE (the JSON items array),
--       ON (the envelope's "on")
local ids, tokens, data, on = {}, {}, nil, nil
local i = 0

function init(args)
  for line in io.lines(args[1]) do
    local id, token = line:match("^([^\t]+)\t(.+)$")
    ids[#ids + 1] = id
    tokens[#tokens + 1] = token
  end
  local file = io.open(args[2], "rb")
  data = file:read("*a")
  file:close()
  on = args[3]
end

function request()
  i = i % #ids + 1
  local body = '{"requestId":"' .. ids[i] .. '","on":"' .. on .. '","token":"' .. tokens[i]
    .. '","data":' .. data .. '}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
