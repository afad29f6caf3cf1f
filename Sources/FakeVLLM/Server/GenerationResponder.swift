import InferenceAPI
import NIOCore
import NIOHTTP1

/// A generation request in flight, as the router starts it: it takes its sequences, starts its
/// answer, then hears from the engine until it ends.
protocol GenerationSink: SequenceSink, InFlightResponse {
    func add(_ choice: GenerationResponder.Choice)
    func start()
}

/// One /v1/completions or /v1/chat/completions request in flight: its `n` choices per prompt,
/// each an engine sequence. It writes the SSE chunks as tokens arrive, or the whole JSON body
/// once every choice has finished, in vLLM's shapes.
final class GenerationResponder: GenerationSink {
    struct Choice {
        var plan: OutputPlan
        var sequenceID: RequestID
        var promptIndex: Int
        var emitted = 0
        /// Bytes of the text already streamed.
        var shownBytes = 0
        var finished: FinishReason?
        var cachedTokens = 0
        /// What a constraint made it write, with its tool calls.
        var output: ConstrainedOutput?
        /// Per tool call: whether its name was sent, and how many bytes of its arguments.
        var sentCalls: [(named: Bool, argumentBytes: Int)] = []
    }

    private let request: GenerationRequest
    private let writer: ResponseWriter
    private let driver: EngineDriver
    private let tokenizer: any TextTokenizer
    private let id: String
    private let created: Int
    private let modelName: String
    private let promptTokenCounts: [Int]
    private let includeCachedTokens: Bool
    private var choices: [Choice] = []
    private var indexOfSequence: [RequestID: Int] = [:]
    private var remaining = 0
    private var headSent = false
    private var done = false
    /// Whether the response has ended (finished, or cancelled by a disconnect).
    var isDone: Bool { done }

    init(request: GenerationRequest, writer: ResponseWriter, driver: EngineDriver, tokenizer: any TextTokenizer, id: String, created: Int,
         modelName: String, promptTokenCounts: [Int], includeCachedTokens: Bool) {
        self.request = request
        self.tokenizer = tokenizer
        self.writer = writer
        self.driver = driver
        self.id = id
        self.created = created
        self.modelName = modelName
        self.promptTokenCounts = promptTokenCounts
        self.includeCachedTokens = includeCachedTokens
    }

    func add(_ choice: Choice) {
        indexOfSequence[choice.sequenceID] = choices.count
        choices.append(choice)
        remaining += 1
    }

    /// Starts the stream's head at once, so a client sees 200 before the first token, as vLLM.
    func start() {
        guard request.stream else { return }
        writer.writeHead(status: .ok, contentType: SSE.contentType, contentLength: nil)
        headSent = true
    }

    /// The client went away: abort every unfinished sequence.
    func cancel() {
        guard !done else { return }
        done = true
        for choice in choices where choice.finished == nil { driver.abort(choice.sequenceID) }
        driver.core.inFlight -= 1
    }

    func receive(_ progress: RequestProgress) {
        guard !done, let index = indexOfSequence[progress.id] else { return }
        choices[index].cachedTokens = progress.cachedPromptTokens
        if let reason = progress.finishReason {
            choices[index].finished = choices[index].plan.finish(engine: reason, emitted: progress.newTokens.upperBound)
            remaining -= 1
        }
        if request.stream {
            writeChunk(for: index, newTokens: progress.newTokens)
        }
        choices[index].emitted = progress.newTokens.upperBound
        if remaining == 0 { finish() }
    }

    private func finish() {
        guard !done else { return }
        done = true
        driver.core.inFlight -= 1
        for promptIndex in promptTokenCounts.indices {
            let generated = choices.filter { $0.promptIndex == promptIndex }.map(\.emitted).max() ?? 0
            driver.metrics.recordParentFinished(n: request.n, maxGeneratedTokens: generated)
        }
        if request.stream {
            var buffer = writer.allocator.buffer(capacity: 512)
            if request.includeUsage {
                SSE.beginEvent(&buffer)
                writeEnvelopeStart(&buffer, chunk: true)
                buffer.writeStaticString("\"choices\":[],\"usage\":")
                writeUsage(&buffer, completionTokens: choices.reduce(0) { $0 + $1.emitted }, omitNullDetails: true)
                buffer.writeStaticString("}")
                SSE.endEvent(&buffer)
            }
            SSE.writeDone(&buffer)
            writer.writeBodyAndEnd(buffer)
        } else {
            var buffer = writer.allocator.buffer(capacity: 512 + choices.reduce(0) { $0 + $1.plan.text.count + 160 })
            writeEnvelopeStart(&buffer, chunk: false)
            buffer.writeStaticString("\"choices\":[")
            for (index, choice) in choices.enumerated() {
                if index > 0 { buffer.writeStaticString(",") }
                writeFinalChoice(&buffer, index: index, choice: choice)
            }
            buffer.writeStaticString("],\"service_tier\":null,\"system_fingerprint\":null,\"usage\":")
            writeUsage(&buffer, completionTokens: choices.reduce(0) { $0 + $1.emitted })
            if request.kind == .chat { buffer.writeStaticString(",\"prompt_logprobs\":null,\"prompt_token_ids\":null") }
            buffer.writeStaticString(",\"kv_transfer_params\":null}")
            writer.writeHead(status: .ok, contentType: "application/json", contentLength: buffer.readableBytes)
            writer.writeBodyAndEnd(buffer)
        }
    }

    // MARK: JSON

    /// `{"id":…,"object":…,"created":…,"model":…,` — the same for every chunk of a response, so
    /// rendered once.
    private lazy var chunkEnvelope: ByteBuffer = envelope(chunk: true)

    private func envelope(chunk: Bool) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString("{\"id\":")
        buffer.writeJSONString(id)
        switch (request.kind, chunk) {
        case (.completion, _): buffer.writeStaticString(",\"object\":\"text_completion\",\"created\":")
        case (.chat, false): buffer.writeStaticString(",\"object\":\"chat.completion\",\"created\":")
        case (.chat, true): buffer.writeStaticString(",\"object\":\"chat.completion.chunk\",\"created\":")
        }
        buffer.writeJSONInteger(created)
        buffer.writeStaticString(",\"model\":")
        buffer.writeJSONString(modelName)
        buffer.writeStaticString(",")
        return buffer
    }

    private func writeEnvelopeStart(_ buffer: inout ByteBuffer, chunk: Bool) {
        if chunk {
            buffer.writeImmutableBuffer(chunkEnvelope)
        } else {
            var whole = envelope(chunk: false)
            buffer.writeBuffer(&whole)
        }
    }

    private func writeChunk(for index: Int, newTokens: Range<Int>) {
        let choice = choices[index]
        var buffer = writer.allocator.buffer(capacity: 320)
        if request.kind == .chat, choice.emitted == 0, !newTokens.isEmpty {
            // vLLM's first chat chunk carries the role and empty content.
            SSE.beginEvent(&buffer)
            writeEnvelopeStart(&buffer, chunk: true)
            buffer.writeStaticString("\"choices\":[{\"index\":")
            buffer.writeJSONInteger(index)
            buffer.writeStaticString(",\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]")
            writeChunkUsage(&buffer, completionTokens: 0, index: index)
            buffer.writeStaticString(",\"prompt_token_ids\":null}")
            SSE.endEvent(&buffer)
        }
        let plan = choice.plan
        let startByte = choice.shownBytes
        let endByte = newTokens.isEmpty
            ? startByte : plan.visibleEnd(after: newTokens.upperBound - 1, finished: choice.finished != nil, shownBefore: startByte)
        choices[index].shownBytes = endByte
        guard !newTokens.isEmpty || choice.finished != nil else { return }
        if request.kind == .chat, showsToolCalls(choices[index]) {
            writeToolCallChunks(&buffer, index: index, visible: endByte, newTokens: newTokens)
            writer.writeBody(buffer)
            return
        }
        SSE.beginEvent(&buffer)
        writeEnvelopeStart(&buffer, chunk: true)
        buffer.writeStaticString("\"choices\":[{\"index\":")
        buffer.writeJSONInteger(index)
        if request.kind == .chat {
            buffer.writeStaticString(",\"delta\":{\"content\":")
            buffer.writeJSONString(utf8: plan.text[startByte..<endByte])
            buffer.writeStaticString("}")
        } else {
            buffer.writeStaticString(",\"text\":")
            buffer.writeJSONString(utf8: plan.text[startByte..<endByte])
        }
        buffer.writeStaticString(",\"logprobs\":")
        writeLogprobs(&buffer, choice: choice, tokens: newTokens, textOffset: startByte)
        buffer.writeStaticString(",\"finish_reason\":")
        buffer.writeJSONString(orNull: choice.finished?.rawValue)
        if request.kind == .completion || choice.finished != nil {
            // Completions chunks carry every field; chat ones only what was set (stop_reason at the end).
            buffer.writeStaticString(",\"stop_reason\":")
            if let stop = plan.stopReason(finished: choice.finished) { buffer.writeJSON(stop) } else { buffer.writeStaticString("null") }
        }
        if request.kind == .completion {
            buffer.writeStaticString(",\"prompt_token_ids\":null,\"token_ids\":null}]")
        } else {
            buffer.writeStaticString(",\"token_ids\":null}]")
        }
        writeChunkUsage(&buffer, completionTokens: newTokens.upperBound, index: index)
        buffer.writeStaticString("}")
        SSE.endEvent(&buffer)
        writer.writeBody(buffer)
    }

    // MARK: Tool calls

    /// Whether a choice's answer is tool calls: it made some and wrote them whole (a call cut
    /// off by max_tokens cannot be parsed, so its text is the answer, as vLLM's parser leaves it).
    private func showsToolCalls(_ choice: Choice) -> Bool {
        guard let output = choice.output, !output.calls.isEmpty else { return false }
        if choice.finished == .length, choice.plan.text.count < output.text.utf8.count { return false }
        return true
    }

    /// A stream's tool-call deltas, as vLLM's parsers stream them: a call's id, type and name
    /// once its name is written (with the first arguments, for guided calls), then its
    /// arguments as they are generated; the last chunk says "tool_calls".
    private func writeToolCallChunks(_ buffer: inout ByteBuffer, index: Int, visible: Int, newTokens: Range<Int>) {
        guard let output = choices[index].output else { return }
        if choices[index].sentCalls.isEmpty { choices[index].sentCalls = Array(repeating: (false, 0), count: output.calls.count) }
        let finished = choices[index].finished != nil
        let textLength = output.text.utf8.count
        let reached = finished ? textLength : visible
        for (position, call) in output.calls.enumerated() where choices[index].sentCalls[position].named || reached >= call.nameEnd {
            func nextArguments() -> ArraySlice<UInt8>? {
                call.argumentsDelta(visible: reached, sent: choices[index].sentCalls[position].argumentBytes, textLength: textLength)
            }
            if !choices[index].sentCalls[position].named {
                // The parser announces a call by name alone; guided decoding sends the name
                // with the first arguments.
                let first = output.style == .forced ? nextArguments() : nil
                if output.style == .forced && first == nil { continue }
                writeToolCallDelta(&buffer, index: index, position: position, announcing: call, arguments: first, completionTokens: newTokens.upperBound)
                choices[index].sentCalls[position].named = true
            }
            if let arguments = nextArguments() {
                writeToolCallDelta(&buffer, index: index, position: position, announcing: nil, arguments: arguments, completionTokens: newTokens.upperBound)
            }
        }
        guard finished else { return }
        SSE.beginEvent(&buffer)
        writeEnvelopeStart(&buffer, chunk: true)
        buffer.writeStaticString("\"choices\":[{\"index\":")
        buffer.writeJSONInteger(index)
        buffer.writeStaticString(",\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\",\"stop_reason\":null,\"token_ids\":null}]")
        writeChunkUsage(&buffer, completionTokens: newTokens.upperBound, index: index)
        buffer.writeStaticString("}")
        SSE.endEvent(&buffer)
    }

    /// One chunk of a tool call: `{"id","type",` and the name when announcing it, then arguments.
    private func writeToolCallDelta(
        _ buffer: inout ByteBuffer, index: Int, position: Int, announcing call: ToolCall?, arguments: ArraySlice<UInt8>?, completionTokens: Int
    ) {
        SSE.beginEvent(&buffer)
        writeEnvelopeStart(&buffer, chunk: true)
        buffer.writeStaticString("\"choices\":[{\"index\":")
        buffer.writeJSONInteger(index)
        buffer.writeStaticString(",\"delta\":{\"tool_calls\":[{")
        if let call {
            buffer.writeStaticString("\"id\":")
            buffer.writeJSONString(call.id)
            buffer.writeStaticString(",\"type\":\"function\",")
        }
        buffer.writeStaticString("\"index\":")
        buffer.writeJSONInteger(position)
        buffer.writeStaticString(",\"function\":{")
        if let call {
            buffer.writeStaticString("\"name\":")
            buffer.writeJSONString(call.name)
            if arguments != nil { buffer.writeStaticString(",") }
        }
        if let arguments {
            buffer.writeStaticString("\"arguments\":")
            buffer.writeJSONString(utf8: arguments)
            choices[index].sentCalls[position].argumentBytes += arguments.count
        }
        buffer.writeStaticString("}}]},\"logprobs\":null,\"finish_reason\":null,\"token_ids\":null}]")
        writeChunkUsage(&buffer, completionTokens: completionTokens, index: index)
        buffer.writeStaticString("}")
        SSE.endEvent(&buffer)
    }

    /// `usage` on a stream chunk: null with include_usage, running counts with continuous stats.
    private func writeChunkUsage(_ buffer: inout ByteBuffer, completionTokens: Int, index: Int) {
        if request.includeUsage && request.continuousUsageStats {
            buffer.writeStaticString(",\"usage\":")
            let prompt = promptTokenCounts[choices[index].promptIndex]
            writeUsageObject(&buffer, prompt: prompt, completion: completionTokens, cached: nil)
        } else if request.kind == .completion {
            buffer.writeStaticString(",\"usage\":null")
        }
    }

    private func writeFinalChoice(_ buffer: inout ByteBuffer, index: Int, choice: Choice) {
        let text = String(decoding: choice.plan.text[0..<(choice.emitted > 0 ? choice.plan.textEnds[choice.emitted - 1] : 0)], as: UTF8.self)
        buffer.writeStaticString("{\"index\":")
        buffer.writeJSONInteger(index)
        if request.kind == .chat, showsToolCalls(choice), let output = choice.output {
            // As vLLM's parser (auto) or guided decoding (required, named) return them.
            buffer.writeStaticString(",\"message\":{\"role\":\"assistant\",\"content\":")
            buffer.writeStaticString(output.style == .parsed ? "null" : "\"\"")
            buffer.writeStaticString(",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,\"tool_calls\":[")
            for (position, call) in output.calls.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                buffer.writeStaticString("{\"id\":")
                buffer.writeJSONString(call.id)
                buffer.writeStaticString(",\"type\":\"function\",\"function\":{\"name\":")
                buffer.writeJSONString(call.name)
                buffer.writeStaticString(",\"arguments\":")
                buffer.writeJSONString(call.arguments)
                buffer.writeStaticString("}}")
            }
            buffer.writeStaticString("],\"reasoning_content\":null}")
        } else if request.kind == .chat {
            buffer.writeStaticString(",\"message\":{\"role\":\"assistant\",\"content\":")
            buffer.writeJSONString(text)
            buffer.writeStaticString(",\"refusal\":null,\"annotations\":null,\"audio\":null,\"function_call\":null,\"tool_calls\":[],\"reasoning_content\":null}")
        } else {
            buffer.writeStaticString(",\"text\":")
            if request.echo, case .text(let prompt) = request.prompts[choice.promptIndex] {
                buffer.writeJSONString(prompt + text)
            } else {
                buffer.writeJSONString(text)
            }
        }
        buffer.writeStaticString(",\"logprobs\":")
        var promptLength = 0
        if request.echo, case .text(let prompt) = request.prompts[choice.promptIndex] { promptLength = prompt.count }
        writeLogprobs(&buffer, choice: choice, tokens: 0..<choice.emitted, textOffset: promptLength)
        buffer.writeStaticString(",\"finish_reason\":")
        if showsToolCalls(choice), choice.output?.style == .parsed {
            buffer.writeStaticString("\"tool_calls\"")
        } else {
            buffer.writeJSONString(orNull: choice.finished?.rawValue)
        }
        buffer.writeStaticString(",\"stop_reason\":")
        if let stop = choice.plan.stopReason(finished: choice.finished) { buffer.writeJSON(stop) } else { buffer.writeStaticString("null") }
        if request.kind == .completion {
            buffer.writeStaticString(",\"token_ids\":null,\"prompt_logprobs\":null,\"prompt_token_ids\":null}")
        } else {
            buffer.writeStaticString(",\"token_ids\":null}")
        }
    }

    /// Log probabilities of `tokens` in vLLM's shape for the endpoint, or `null` when not asked for.
    private func writeLogprobs(_ buffer: inout ByteBuffer, choice: Choice, tokens: Range<Int>, textOffset: Int) {
        guard let count = request.logprobs else {
            buffer.writeStaticString("null")
            return
        }
        let steps = tokens.map { choice.plan.topLogprobs(at: $0, count: count, tokenizer: tokenizer) }
        switch request.kind {
        case .completion:
            // Completions list the sampled token and the top `count` (vLLM's top + 1 rule; the
            // sampled token is the most likely here, so that is `count` entries, at least one).
            buffer.writeStaticString("{\"text_offset\":[")
            var offset = textOffset
            for (position, step) in steps.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                buffer.writeJSONInteger(offset)
                offset += tokenizer.tokenString(step[0].token).count
            }
            buffer.writeStaticString("],\"token_logprobs\":[")
            for (position, step) in steps.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                buffer.writeJSONDouble(step[0].logprob)
            }
            buffer.writeStaticString("],\"tokens\":[")
            for (position, step) in steps.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                buffer.writeJSONString(tokenizer.tokenString(step[0].token))
            }
            buffer.writeStaticString("],\"top_logprobs\":[")
            for (position, step) in steps.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                buffer.writeStaticString("{")
                for (rank, entry) in step.enumerated() {
                    if rank > 0 { buffer.writeStaticString(",") }
                    buffer.writeJSONString(tokenizer.tokenString(entry.token))
                    buffer.writeStaticString(":")
                    buffer.writeJSONDouble(entry.logprob)
                }
                buffer.writeStaticString("}")
            }
            buffer.writeStaticString("]}")
        case .chat:
            buffer.writeStaticString("{\"content\":[")
            for (position, step) in steps.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                writeChatLogprob(&buffer, token: step[0].token, logprob: step[0].logprob)
                buffer.writeStaticString(",\"top_logprobs\":[")
                for (rank, entry) in step.prefix(count).enumerated() {
                    if rank > 0 { buffer.writeStaticString(",") }
                    writeChatLogprob(&buffer, token: entry.token, logprob: entry.logprob)
                    buffer.writeStaticString("}")
                }
                buffer.writeStaticString("]}")
            }
            buffer.writeStaticString("]}")
        }
    }

    /// `{"token":…,"logprob":…,"bytes":[…]` — left open for `top_logprobs`.
    private func writeChatLogprob(_ buffer: inout ByteBuffer, token: Int, logprob: Double) {
        let text = tokenizer.tokenString(token)
        buffer.writeStaticString("{\"token\":")
        buffer.writeJSONString(text)
        buffer.writeStaticString(",\"logprob\":")
        buffer.writeJSONDouble(logprob)
        buffer.writeStaticString(",\"bytes\":[")
        buffer.writeString(text.utf8.map(String.init).joined(separator: ","))
        buffer.writeStaticString("]")
    }

    private func writeUsage(_ buffer: inout ByteBuffer, completionTokens: Int, omitNullDetails: Bool = false) {
        let prompt = promptTokenCounts.reduce(0, +)
        // Cached tokens of the first choice of each prompt, as vLLM reports the parent's count.
        var cached = 0
        var seenPrompts = Set<Int>()
        for choice in choices where seenPrompts.insert(choice.promptIndex).inserted { cached += choice.cachedTokens }
        // vLLM sets the details only when enabled and something was cached.
        writeUsageObject(&buffer, prompt: prompt, completion: completionTokens, cached: includeCachedTokens && cached > 0 ? cached : nil,
                         omitNullDetails: omitNullDetails)
    }

    private func writeUsageObject(_ buffer: inout ByteBuffer, prompt: Int, completion: Int, cached: Int?, omitNullDetails: Bool = false) {
        buffer.writeStaticString("{\"prompt_tokens\":")
        buffer.writeJSONInteger(prompt)
        buffer.writeStaticString(",\"total_tokens\":")
        buffer.writeJSONInteger(prompt + completion)
        buffer.writeStaticString(",\"completion_tokens\":")
        buffer.writeJSONInteger(completion)
        if let cached {
            buffer.writeStaticString(",\"prompt_tokens_details\":{\"cached_tokens\":")
            buffer.writeJSONInteger(cached)
            buffer.writeStaticString("}}")
        } else if omitNullDetails {
            buffer.writeStaticString("}")
        } else {
            buffer.writeStaticString(",\"prompt_tokens_details\":null}")
        }
    }
}
