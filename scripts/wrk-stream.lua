-- wrk: POST a streaming completion of 16 tokens: 16 SSE events plus [DONE] per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"meta-llama/Meta-Llama-3-8B","prompt":"Hello there","max_tokens":16,"ignore_eos":true,"stream":true}'
