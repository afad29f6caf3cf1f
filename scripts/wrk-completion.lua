-- wrk: POST a small non-streaming completion (16 tokens, vLLM's default max_tokens).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"meta-llama/Meta-Llama-3-8B","prompt":"Hello there","max_tokens":16,"ignore_eos":true}'
