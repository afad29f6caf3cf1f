"""Drives an Understudy server with the official OpenAI Python SDK; exits non-zero on failure.

Usage: python3 openai_sdk_check.py BASE_URL [--ca CERT.pem] [--api-key KEY]
       (e.g. http://127.0.0.1:8000/v1; an https URL is checked against CERT.pem)
"""
import argparse
import json
import re

import jsonschema
import openai
import pydantic

arguments = argparse.ArgumentParser()
arguments.add_argument("base")
arguments.add_argument("--ca")
arguments.add_argument("--api-key")
options = arguments.parse_args()
base = options.base
http_client = openai.DefaultHttpxClient(verify=options.ca) if options.ca else None
client = openai.OpenAI(base_url=base, api_key=options.api_key or "unused", max_retries=0, http_client=http_client)

if options.api_key:
    stranger = openai.OpenAI(base_url=base, api_key="not-the-key", max_retries=0, http_client=http_client)
    try:
        stranger.completions.create(model="x", prompt="x", max_tokens=1)
        raise SystemExit("expected AuthenticationError")
    except openai.AuthenticationError:
        pass
model = client.models.list().data[0].id
assert model == "meta-llama/Meta-Llama-3-8B", model

completion = client.completions.create(model=model, prompt="Hello", max_tokens=5, extra_body={"ignore_eos": True})
assert completion.choices[0].finish_reason == "length", completion
assert completion.usage.completion_tokens == 5, completion.usage

chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=6)
assert chat.choices[0].message.role == "assistant", chat
assert chat.usage.completion_tokens <= 6, chat.usage

text = "".join(
    chunk.choices[0].text
    for chunk in client.completions.create(model=model, prompt="Hello", max_tokens=8, stream=True, extra_body={"ignore_eos": True})
    if chunk.choices
)
assert len(text) > 0, text

chunks = list(
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )
)
assert chunks[0].choices[0].delta.role == "assistant", chunks[0]
assert chunks[-1].usage.completion_tokens == 4, chunks[-1]
content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert len(content) > 0

try:
    client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    raise SystemExit("expected NotFoundError")
except openai.NotFoundError as error:
    assert "does not exist" in str(error), error

try:
    client.completions.create(model=model, prompt="word " * 1200, max_tokens=10)
    raise SystemExit("expected BadRequestError")
except openai.BadRequestError as error:
    assert "maximum context length" in str(error), error

# Greedy decoding says the same thing every time.
greedy = [
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0)
    .choices[0].message.content
    for _ in range(2)
]
assert greedy[0] == greedy[1] and greedy[0], greedy

# The Responses API, whole and streamed.
response = client.responses.create(model=model, input="Say hello.", instructions="Be brief.", max_output_tokens=6)
assert response.status == "completed", response
assert response.output_text and response.usage.output_tokens <= 6, response
assert response.id.startswith("resp_"), response.id
events = list(client.responses.create(model=model, input=[{"role": "user", "content": "Hi"}], max_output_tokens=4, stream=True))
kinds = [event.type for event in events]
assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
assert deltas == events[-1].response.output_text, (deltas, events[-1].response)

# Tool calls (the server runs with --enable-auto-tool-choice --tool-call-parser hermes).
weather = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": weather}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
called = client.chat.completions.create(model=model, messages=messages, tools=tools, max_tokens=200)
choice = called.choices[0]
assert choice.finish_reason == "tool_calls", choice
call = choice.message.tool_calls[0]
assert call.id.startswith("chatcmpl-tool-") and call.function.name == "get_weather", call
jsonschema.validate(json.loads(call.function.arguments), weather)

# Streamed, the deltas add up to a call with valid arguments.
names, arguments, finish = [], "", None
for chunk in client.chat.completions.create(model=model, messages=messages, tools=tools, max_tokens=200, stream=True):
    if not chunk.choices:
        continue
    delta = chunk.choices[0].delta
    for part in delta.tool_calls or []:
        if part.function.name:
            names.append(part.function.name)
        arguments += part.function.arguments or ""
    finish = chunk.choices[0].finish_reason or finish
assert names == ["get_weather"] and finish == "tool_calls", (names, finish)
jsonschema.validate(json.loads(arguments), weather)

# After the tool's result, the model answers in words.
followed = client.chat.completions.create(
    model=model, tools=tools, max_tokens=20,
    messages=messages + [choice.message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "21 C, sunny"}],
)
assert followed.choices[0].message.content and not followed.choices[0].message.tool_calls, followed

# A named tool without the parser, as guided decoding makes it.
named = client.chat.completions.create(
    model=model, messages=messages, tools=tools, max_tokens=200, tool_choice={"type": "function", "function": {"name": "get_weather"}})
jsonschema.validate(json.loads(named.choices[0].message.tool_calls[0].function.arguments), weather)

# Structured output: a JSON schema, a Pydantic model through the SDK's parse helper, a regex.
schema = {"type": "object", "properties": {"title": {"type": "string", "maxLength": 40}, "year": {"type": "integer", "minimum": 1900, "maximum": 2030},
          "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3}}, "required": ["title", "year", "tags"]}
for _ in range(5):
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "A film, as JSON."}], max_tokens=300,
        response_format={"type": "json_schema", "json_schema": {"name": "film", "schema": schema}})
    jsonschema.validate(json.loads(answer.choices[0].message.content), schema)


class Film(pydantic.BaseModel):
    title: str
    year: int
    rating: float


parsed = client.chat.completions.parse(model=model, messages=[{"role": "user", "content": "A film."}], response_format=Film, max_tokens=300)
assert isinstance(parsed.choices[0].message.parsed, Film), parsed
coded = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "A code."}], max_tokens=50, extra_body={"structured_outputs": {"regex": r"[A-Z]{3}-\d{4}"}})
assert re.fullmatch(r"[A-Z]{3}-\d{4}", coded.choices[0].message.content), coded

print("all OpenAI SDK checks passed")
