import InferenceAPI
import NIOCore

/// Makes hostile requests, deterministically from a seed: valid OpenAI and vLLM requests with
/// one to three mutations each — a field set to an extreme or wrongly typed value, removed or
/// added, the body replaced or its bytes damaged, a header garbled. Every request it makes is a
/// client's error or a valid request, so a server should answer each with a 2xx or a 4xx,
/// promptly, and never with a 5xx, a hang or a closed connection.
public struct RequestFuzzer {
    private var random: SplitMix64
    private let model: String

    public init(seed: UInt64, model: String = "meta-llama/Meta-Llama-3-8B") {
        random = SplitMix64(seed: seed)
        self.model = model
    }

    /// The next request; the same seed gives the same sequence.
    public mutating func next() -> LoadRequest {
        var (path, body) = template()
        var headers: [(String, String)] = [("content-type", "application/json")]
        var raw: ByteBuffer?
        for _ in 0...pick(2) {
            switch pick(19) {
            case 0...8: body = mutateField(body)
            case 9...10: body = removeField(body)
            case 11: body = addField(body)
            case 12: body = extreme()
            case 13...14: raw = damage(raw ?? encode(body))
            case 15: headers = garble(headers)
            case 16: path = otherPath()
            case 17: body = mutateInside(body)
            default: headers.append(gatewayHeader())
            }
        }
        let streaming = body["stream"] == .bool(true)
        var request = LoadRequest(stream: "fuzz", path: path, body: raw ?? encode(body), headers: headers, streaming: streaming)
        if pick(40) == 0 {
            request = .get(["/v1/models", "/health", "/metrics", "/version", "/load", "/v1/nope", "/"][pick(6)], stream: "fuzz")
        }
        return request
    }

    // MARK: Templates

    private mutating func template() -> (String, JSONValue) {
        let text = JSONValue.string(["Hello", "", "SELECT * FROM t", String(repeating: "word ", count: 200), "naïve 🤖 \u{0}"][pick(4)])
        switch pick(7) {
        case 0, 1:
            var fields: JSONObject = ["model": .string(model), "prompt": text, "max_tokens": .integer(1 + pick(31))]
            for (key, value) in samplingFields().shuffledPrefix(pick(6), using: &random) { fields[key] = value }
            return ("/v1/completions", .object(fields))
        case 2, 3:
            let messages: JSONValue = .array([
                .object(["role": "system", "content": "Be brief."]),
                .object(["role": "user", "content": pick(1) == 0 ? text : .array([.object(["type": "text", "text": text])])]),
            ])
            var fields: JSONObject = ["model": .string(model), "messages": messages, "max_completion_tokens": .integer(1 + pick(31))]
            for (key, value) in (samplingFields() + chatFields()).shuffledPrefix(pick(6), using: &random) { fields[key] = value }
            return ("/v1/chat/completions", .object(fields))
        case 4:
            return ("/tokenize", .object(["model": .string(model), "prompt": text]))
        case 5:
            var fields: JSONObject = ["model": .string(model), "input": text, "max_output_tokens": .integer(1 + pick(31))]
            let responseFields: [(String, JSONValue)] = [
                ("stream", true), ("instructions", "Be brief."), ("temperature", 0.7), ("top_p", 0.9), ("store", false),
                ("text", .object(["format": .object(["type": "json_schema", "name": "answer", "schema": schema()])])),
                ("input", .array([.object(["role": "user", "content": text])])),
            ]
            for (key, value) in responseFields.shuffledPrefix(pick(4), using: &random) { fields[key] = value }
            return ("/v1/responses", .object(fields))
        case 6:
            return ("/v1/embeddings", .object(["model": .string(model), "input": text]))
        default:
            return ("/detokenize", .object(["model": .string(model), "tokens": .array([.integer(1), .integer(2), .integer(3)])]))
        }
    }

    private func samplingFields() -> [(String, JSONValue)] {
        [
            ("n", 2), ("temperature", 0.7), ("top_p", 0.9), ("top_k", 5), ("min_p", 0.1), ("seed", 7), ("stream", true),
            ("stream_options", .object(["include_usage": true])), ("stop", .array(["\n"])), ("stop_token_ids", .array([13])),
            ("ignore_eos", true), ("min_tokens", 1), ("logprobs", 2), ("echo", false), ("presence_penalty", 0.5),
            ("frequency_penalty", 0.5), ("repetition_penalty", 1.1), ("response_format", .object(["type": "text"])),
            ("structured_outputs", .object(["json": .object([:])])), ("include_stop_str_in_output", true), ("user", "fuzz"),
            ("response_format", .object(["type": "json_schema", "json_schema": .object(["name": "answer", "schema": schema()])])),
            ("response_format", .object(["type": "json_object"])), ("structured_outputs", .object(["regex": "[a-z]{2,8}( [0-9]+)?"])),
            ("structured_outputs", .object(["choice": .array(["yes", "no"])])), ("structured_outputs", .object(["json": schema()])),
        ]
    }

    private func chatFields() -> [(String, JSONValue)] {
        [
            ("tools", .array([.object(["type": "function", "function": .object(["name": "lookup", "parameters": .object([:])])])])),
            ("tool_choice", "none"), ("logprobs", true), ("top_logprobs", 2), ("max_tokens", 8),
            ("tools", .array([.object(["type": "function", "function": .object(["name": "lookup", "parameters": schema()])])])),
            ("tool_choice", "auto"), ("tool_choice", "required"),
            ("tool_choice", .object(["type": "function", "function": .object(["name": "lookup"])])),
        ]
    }

    /// A JSON schema of the kinds clients send: typed properties, bounds, an enum, a pattern.
    private func schema() -> JSONValue {
        .object([
            "type": "object",
            "properties": .object([
                "city": .object(["type": "string", "minLength": 1, "maxLength": 40]),
                "days": .object(["type": "integer", "minimum": 1, "maximum": 14]),
                "unit": .object(["enum": .array(["celsius", "fahrenheit"])]),
                "code": .object(["type": "string", "pattern": "^[A-Z]{3}$"]),
                "tags": .object(["type": "array", "items": .object(["type": "string"]), "maxItems": 3]),
            ]),
            "required": .array(["city", "days"]),
            "additionalProperties": false,
        ])
    }

    // MARK: Mutations

    /// Values at and past every boundary a field may have, and of every JSON type. Only the
    /// one drawn is built (the large ones cost more than sending them).
    private mutating func extreme() -> JSONValue {
        switch pick(40) {
        case 0: return 0
        case 1: return -1
        case 2: return 1
        case 3: return 2
        case 4: return 16385
        case 5: return 2_147_483_647
        case 6: return 2_147_483_648
        case 7: return -2_147_483_648
        case 8: return 9_007_199_254_740_993
        case 9: return .integer(Int.max)
        case 10: return .integer(Int.min)
        case 11: return .double([1e308, -1e308, 5e-324, 0.5, -0.0, 1e19, -1e19][pick(6)])
        case 12: return ["", "x", "-1", "1e400", "true", "\u{0}\u{FFFF}"][pick(5)]
        case 13: return .string(String(repeating: "a", count: 1 + pick(100_000)))
        case 14: return true
        case 15: return false
        case 16: return .null
        case 17: return .array([])
        case 18: return .object([:])
        case 19: return .array([.integer(-1)])
        case 20: return .array([.string("")])
        case 21: return .array([.null])
        case 22: return .array([.array([])])
        case 23: return .array((0..<(1 + pick(5000))).map { .integer($0 * 7919) })
        case 24: return .object(["type": "bogus"])
        case 25: return .object(["type": "function", "function": .object(["name": 5])])
        case 26: return nested(depth: 1 + pick(600))
        case 27: return .array([.object(["role": "user", "content": .array([.object(["type": "image_url", "image_url": .object(["url": "x"])])])])])
        case 28: return .object(["include_usage": "yes", "continuous_usage_stats": 1])
        case 29: return .object(["type": "json_schema"])
        case 30: return .array([.string("a"), .integer(1)])
        case 31: return .array([.array([.integer(1)]), .array([])])
        case 32: return "none"
        case 33: return "auto"
        case 34: return "required"
        case 35: return .integer(-(1 + pick(1000)))
        case 36: return ["(a|b)*c", "[", "a{1000000}", "(?<x>a)\\k<x>", "\\p{L}+", "(a*)*$", "^$", "[^\\x00-\\x{10FFFF}]"][pick(7)]
        case 37: return .object(["$ref": "#/definitions/missing"])
        case 38: return .object(["type": "array", "minItems": .integer(Int.max), "items": .object(["$ref": "#"])])
        case 39: return .object(["anyOf": .array([]), "not": .object([:])])
        default: return .double(Double(pick(1000)) / 7)
        }
    }

    private mutating func nested(depth: Int) -> JSONValue {
        var value: JSONValue = 1
        for index in 0..<depth { value = index % 2 == 0 ? .array([value]) : .object(["a": value]) }
        return value
    }

    private static let knownFields = [
        "model", "prompt", "messages", "max_tokens", "max_completion_tokens", "n", "temperature", "top_p", "top_k", "min_p", "seed",
        "stream", "stream_options", "stop", "stop_token_ids", "ignore_eos", "min_tokens", "logprobs", "top_logprobs", "echo",
        "presence_penalty", "frequency_penalty", "repetition_penalty", "response_format", "structured_outputs", "tools", "tool_choice",
        "tokens", "add_special_tokens", "return_token_strs", "include_stop_str_in_output", "lora_name", "lora_path", "priority",
        "input", "instructions", "max_output_tokens", "text", "previous_response_id", "background", "encoding_format",
    ]

    private mutating func mutateField(_ body: JSONValue) -> JSONValue {
        guard case .object(var fields) = body else { return body }
        fields[Self.knownFields[pick(Self.knownFields.count - 1)]] = extreme()
        return .object(fields)
    }

    private mutating func removeField(_ body: JSONValue) -> JSONValue {
        guard case .object(var fields) = body, !fields.isEmpty else { return body }
        fields[fields.keys[pick(fields.count - 1)]] = nil
        return .object(fields)
    }

    private mutating func addField(_ body: JSONValue) -> JSONValue {
        guard case .object(var fields) = body else { return body }
        fields["unknown_\(pick(999))"] = extreme()
        return .object(fields)
    }

    /// Mutates a value inside the body's schema, messages or prompt list.
    private mutating func mutateInside(_ body: JSONValue) -> JSONValue {
        guard case .object(var fields) = body else { return body }
        if pick(1) == 0, let (key, path) = schemaLocation(in: fields), let holder = fields[key] {
            let keywords = ["type", "properties", "items", "minLength", "maxLength", "pattern", "enum", "const", "minimum", "maximum",
                            "required", "anyOf", "oneOf", "allOf", "$ref", "$defs", "minItems", "format", "multipleOf", "additionalProperties"]
            fields[key] = Self.setting(keywords[pick(keywords.count - 1)], to: extreme(), at: path[...], in: holder)
        } else if case .array(var messages)? = fields["messages"], !messages.isEmpty {
            let index = pick(messages.count - 1)
            if case .object(var message) = messages[index] {
                message[["role", "content", "name", "tool_calls"][pick(3)]] = extreme()
                messages[index] = .object(message)
            } else {
                messages[index] = extreme()
            }
            fields["messages"] = .array(messages)
        } else {
            fields["prompt"] = .array([extreme(), extreme()])
        }
        return .object(fields)
    }

    /// Where the body carries a JSON schema: the top-level field and the path below it.
    private func schemaLocation(in fields: JSONObject) -> (String, [String])? {
        if fields["response_format"]?["json_schema"]?["schema"] != nil { return ("response_format", ["json_schema", "schema"]) }
        if fields["structured_outputs"]?["json"] != nil { return ("structured_outputs", ["json"]) }
        if fields["text"]?["format"]?["schema"] != nil { return ("text", ["format", "schema"]) }
        return nil
    }

    /// `value` with `key` set in the object found by following `path` (objects only).
    private static func setting(_ key: String, to newValue: JSONValue, at path: ArraySlice<String>, in value: JSONValue) -> JSONValue {
        guard case .object(var object) = value else { return value }
        if let next = path.first {
            guard let inner = object[next] else { return value }
            object[next] = setting(key, to: newValue, at: path.dropFirst(), in: inner)
        } else {
            object[key] = newValue
        }
        return .object(object)
    }

    /// Damages the encoded body: truncated, bytes flipped, inserted or removed, repeated.
    private mutating func damage(_ bytes: ByteBuffer) -> ByteBuffer {
        var array = Array(bytes.readableBytesView)
        guard !array.isEmpty else { return ByteBuffer(bytes: [UInt8(ascii: "{")]) }
        switch pick(4) {
        case 0: array.removeLast(pick(array.count - 1))
        case 1:
            for _ in 0...pick(8) { array[pick(array.count - 1)] ^= UInt8(truncatingIfNeeded: 1 << pick(7)) }
        case 2:
            let tokens: [[UInt8]] = [Array("NaN".utf8), Array("Infinity".utf8), Array("-Infinity".utf8), [0xFF, 0xFE], [0xC0, 0x80], [0xED, 0xA0, 0x80],
                                     Array("\\ud800".utf8), Array(",".utf8), Array("}".utf8), Array("\"".utf8), [0]]
            array.insert(contentsOf: tokens[pick(tokens.count - 1)], at: pick(array.count))
        case 3: array.removeSubrange(pick(array.count - 1)..<array.count)
        default: array += array
        }
        return ByteBuffer(bytes: array)
    }

    private mutating func garble(_ headers: [(String, String)]) -> [(String, String)] {
        switch pick(5) {
        case 0: return []
        case 1: return [("content-type", ["text/plain", "application/json; charset=latin-1", "APPLICATION/JSON", "", "multipart/form-data"][pick(4)])]
        case 2: return headers + [("authorization", ["Bearer", "Bearer " + String(repeating: "k", count: 5000), "Basic x", ""][pick(3)])]
        case 3: return headers + [("x-request-id", String(repeating: "r", count: 1 + pick(4000)))]
        case 4: return headers + [("expect", "100-continue")]
        default: return headers + [("accept", "text/event-stream")]
        }
    }

    /// GIE's control headers, with values a client may get wrong. Not the subset hint: a hint
    /// naming no endpoint of the pool is GIE's 503 by design, and comes from a proxy, not a client.
    private mutating func gatewayHeader() -> (String, String) {
        let names = ["x-gateway-inference-objective", "x-gateway-model-name-rewrite", "x-gateway-inference-fairness-id"]
        let values = ["", ",", "127.0.0.1:1", "not an address", String(repeating: "9", count: 300), "a,b,c", "sql-lora", "meta-llama/Meta-Llama-3-8B"]
        return (names[pick(names.count - 1)], values[pick(values.count - 1)])
    }

    private mutating func otherPath() -> String {
        ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/v1/load_lora_adapter", "/v1/unload_lora_adapter",
         "/v1/completions?x=1", "/v1//completions", "/v1/embeddings", "/%ff", "/" + String(repeating: "p", count: 3000)][pick(10)]
    }

    // MARK: Helpers

    private func encode(_ value: JSONValue) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeJSON(value)
        return buffer
    }

    /// A uniform integer in 0...upper.
    private mutating func pick(_ upper: Int) -> Int {
        Int(random.next() % UInt64(upper + 1))
    }
}

extension Array {
    /// The first `count` elements of a shuffle, drawn from `random`.
    fileprivate func shuffledPrefix(_ count: Int, using random: inout SplitMix64) -> ArraySlice<Element> {
        var copy = self
        for index in copy.indices.reversed() where index > 0 {
            copy.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        return copy.prefix(count)
    }
}
