-- wrk: POST a non-streaming completion (16 tokens, vLLM's default max_tokens). PROMPT_BYTES
-- (environment) makes the prompt that long: lines of text, so the JSON string has escapes
-- (\n) as real prompts do, each request's starting with its own number so that no two share a
-- prefix (a shared one would send them all to one pod by prefix affinity, and measure routing,
-- not the proxy); unset, the prompt is "Hello there".
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local size = tonumber(os.getenv("PROMPT_BYTES") or "0")
local head = '{"model":"meta-llama/Meta-Llama-3-8B","prompt":"'
local tail = '","max_tokens":16,"ignore_eos":true}'
wrk.body = head .. "Hello there" .. tail
if size > 0 then
  local line = "The quick brown fox jumps over the lazy dog, again and again.\\n"
  local text = string.rep(line, math.ceil(size / #line)):sub(1, size - 24)
  if text:sub(-1) == "\\" then text = text:sub(1, -2) .. "." end
  local count = 0
  request = function()
    count = count + 1
    return wrk.format(nil, nil, nil, head .. string.format("Request %020d: ", count * 7919 + math.random(0, 7918)) .. text .. tail)
  end
end
