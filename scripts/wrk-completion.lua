-- wrk: POST a non-streaming completion (16 tokens, vLLM's default max_tokens). PROMPT_BYTES
-- (environment) makes the prompt that long: lines of text, so the JSON string has escapes
-- (\n) as real prompts do; unset, the prompt is "Hello there".
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local size = tonumber(os.getenv("PROMPT_BYTES") or "0")
local prompt = "Hello there"
if size > 0 then
  local line = "The quick brown fox jumps over the lazy dog, again and again.\\n"
  prompt = string.rep(line, math.ceil(size / #line)):sub(1, size)
  if prompt:sub(-1) == "\\" then prompt = prompt:sub(1, -2) .. "." end
end
wrk.body = '{"model":"meta-llama/Meta-Llama-3-8B","prompt":"' .. prompt .. '","max_tokens":16,"ignore_eos":true}'
