import Foundation
import InferenceAPI
import NIOCore

/// One /v1/responses request in flight (one sequence): the whole response object at the end, or
/// vLLM 0.11.0's stream of typed events (`event: TYPE` and `data: JSON` lines, no `[DONE]`):
/// created, in_progress, output_item.added, content_part.added, a delta per engine output, then
/// output_text.done, content_part.done, output_item.done and completed.
///
/// Two 0.11.0 stream bugs are not reproduced, as vLLM fixed them later (PR #30237): there the
/// `response.completed` event's output holds only the last delta (usually nothing), and
/// `content_index` grows by one with every event; here the output is whole and the index 0.
final class ResponsesResponder: GenerationSink {
    private let request: GenerationRequest
    private let responses: ResponsesRequest
    private let writer: ResponseWriter
    private let driver: EngineDriver
    private let id: String
    private let created: Int
    private let modelName: String
    private let promptTokens: Int
    private let maxOutputTokens: Int
    /// A streamed item is named by a plain uuid4, a whole response's by `msg_` and 32 hex digits.
    private let itemID: String
    private var choice: GenerationResponder.Choice?
    private var sequenceNumber = 0
    private var done = false
    var isDone: Bool { done }

    init(
        request: GenerationRequest, responses: ResponsesRequest, writer: ResponseWriter, driver: EngineDriver, id: String, created: Int,
        modelName: String, promptTokens: Int, maxOutputTokens: Int
    ) {
        self.request = request
        self.responses = responses
        self.writer = writer
        self.driver = driver
        self.id = id
        self.created = created
        self.modelName = modelName
        self.promptTokens = promptTokens
        self.maxOutputTokens = maxOutputTokens
        itemID = request.stream ? UUID().uuidString.lowercased() : "msg_" + UUID().uuidString.lowercased().filter { $0 != "-" }
    }

    func add(_ choice: GenerationResponder.Choice) { self.choice = choice }

    func start() {
        guard request.stream else { return }
        writer.writeHead(status: .ok, contentType: SSE.contentType, contentLength: nil)
        var buffer = writer.allocator.buffer(capacity: 2048)
        for type in ["response.created", "response.in_progress"] {
            writeEvent(&buffer, type) { buffer in
                buffer.writeStaticString("\"response\":")
                writeResponse(&buffer, streamed: true, finished: false)
            }
        }
        writeEvent(&buffer, "response.output_item.added") { buffer in
            buffer.writeStaticString("\"item\":{\"id\":")
            buffer.writeJSONString(itemID)
            buffer.writeStaticString(",\"content\":[],\"role\":\"assistant\",\"status\":\"in_progress\",\"type\":\"message\"},\"output_index\":0")
        }
        writeEvent(&buffer, "response.content_part.added") { buffer in
            buffer.writeStaticString("\"content_index\":0,\"item_id\":")
            buffer.writeJSONString(itemID)
            buffer.writeStaticString(",\"output_index\":0,\"part\":{\"annotations\":[],\"text\":\"\",\"type\":\"output_text\",\"logprobs\":[]}")
        }
        writer.writeBody(buffer)
    }

    func cancel() {
        guard !done else { return }
        done = true
        if let choice, choice.finished == nil { driver.abort(choice.sequenceID) }
        driver.core.inFlight -= 1
    }

    func receive(_ progress: RequestProgress) {
        guard !done, var choice, progress.id == choice.sequenceID else { return }
        choice.cachedTokens = progress.cachedPromptTokens
        if let reason = progress.finishReason { choice.finished = choice.plan.finish(engine: reason, emitted: progress.newTokens.upperBound) }
        if request.stream, !progress.newTokens.isEmpty || choice.finished != nil {
            let start = choice.shownBytes
            let end = progress.newTokens.isEmpty
                ? start : choice.plan.visibleEnd(after: progress.newTokens.upperBound - 1, finished: choice.finished != nil, shownBefore: start)
            choice.shownBytes = end
            var buffer = writer.allocator.buffer(capacity: 256)
            writeEvent(&buffer, "response.output_text.delta") { buffer in
                buffer.writeStaticString("\"content_index\":0,\"delta\":")
                buffer.writeJSONString(utf8: choice.plan.text[start..<end])
                buffer.writeStaticString(",\"item_id\":")
                buffer.writeJSONString(itemID)
                buffer.writeStaticString(",\"logprobs\":[],\"output_index\":0")
            }
            writer.writeBody(buffer)
        }
        choice.emitted = progress.newTokens.upperBound
        self.choice = choice
        if choice.finished != nil { finish() }
    }

    private var text: String {
        guard let choice, choice.emitted > 0 else { return "" }
        return String(decoding: choice.plan.text[0..<choice.plan.textEnds[choice.emitted - 1]], as: UTF8.self)
    }

    private func finish() {
        done = true
        driver.core.inFlight -= 1
        driver.metrics.recordParentFinished(n: 1, maxGeneratedTokens: choice?.emitted ?? 0)
        guard request.stream else {
            var buffer = writer.allocator.buffer(capacity: 1024 + text.utf8.count)
            writeResponse(&buffer, streamed: false, finished: true)
            writer.writeHead(status: .ok, contentType: "application/json", contentLength: buffer.readableBytes)
            writer.writeBodyAndEnd(buffer)
            return
        }
        var buffer = writer.allocator.buffer(capacity: 2048 + 3 * text.utf8.count)
        writeEvent(&buffer, "response.output_text.done") { buffer in
            buffer.writeStaticString("\"content_index\":0,\"item_id\":")
            buffer.writeJSONString(itemID)
            buffer.writeStaticString(",\"logprobs\":[],\"output_index\":0,\"text\":")
            buffer.writeJSONString(text)
        }
        writeEvent(&buffer, "response.content_part.done") { buffer in
            buffer.writeStaticString("\"content_index\":0,\"item_id\":")
            buffer.writeJSONString(itemID)
            buffer.writeStaticString(",\"output_index\":0,\"part\":")
            writeTextPart(&buffer)
        }
        writeEvent(&buffer, "response.output_item.done") { buffer in
            buffer.writeStaticString("\"item\":")
            writeItem(&buffer, streamed: true)
            buffer.writeStaticString(",\"output_index\":0")
        }
        writeEvent(&buffer, "response.completed") { buffer in
            buffer.writeStaticString("\"response\":")
            writeResponse(&buffer, streamed: true, finished: true)
        }
        writer.writeBodyAndEnd(buffer)
    }

    // MARK: JSON

    /// `event: TYPE`, then `data: {FIELDS…,"sequence_number":N,"type":TYPE}`.
    private func writeEvent(_ buffer: inout ByteBuffer, _ type: String, _ fields: (inout ByteBuffer) -> Void) {
        buffer.writeString("event: \(type)\n")
        SSE.beginEvent(&buffer)
        buffer.writeStaticString("{")
        fields(&buffer)
        buffer.writeStaticString(",\"sequence_number\":")
        buffer.writeJSONInteger(sequenceNumber)
        buffer.writeStaticString(",\"type\":")
        buffer.writeJSONString(type)
        buffer.writeStaticString("}")
        SSE.endEvent(&buffer)
        sequenceNumber += 1
    }

    private func writeTextPart(_ buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"annotations\":[],\"text\":")
        buffer.writeJSONString(text)
        buffer.writeStaticString(",\"type\":\"output_text\",\"logprobs\":null}")
    }

    private func writeItem(_ buffer: inout ByteBuffer, streamed: Bool) {
        buffer.writeStaticString("{\"id\":")
        buffer.writeJSONString(itemID)
        buffer.writeStaticString(",\"content\":[")
        writeTextPart(&buffer)
        buffer.writeStaticString("],\"role\":\"assistant\",\"status\":\"completed\",\"type\":\"message\"")
        if streamed { buffer.writeStaticString(",\"summary\":[]") }
        buffer.writeStaticString("}")
    }

    /// The response object: vLLM's `ResponsesResponse` for a whole response; in a stream, as
    /// re-read into openai's `Response` (a float `created_at`, the fields openai adds, vLLM's
    /// extras last). A non-Harmony model's response is always "completed", even when cut by length.
    private func writeResponse(_ buffer: inout ByteBuffer, streamed: Bool, finished: Bool) {
        buffer.writeStaticString("{\"id\":")
        buffer.writeJSONString(id)
        buffer.writeStaticString(",\"created_at\":")
        if streamed { buffer.writeJSONDouble(Double(created)) } else { buffer.writeJSONInteger(created) }
        if streamed { buffer.writeStaticString(",\"error\":null") }
        buffer.writeStaticString(",\"incomplete_details\":null,\"instructions\":")
        buffer.writeJSONString(orNull: responses.instructions)
        buffer.writeStaticString(",\"metadata\":null,\"model\":")
        buffer.writeJSONString(modelName)
        buffer.writeStaticString(",\"object\":\"response\",\"output\":[")
        if finished { writeItem(&buffer, streamed: streamed) }
        buffer.writeStaticString("]")
        if !streamed { buffer.writeStaticString(",\"input_messages\":null,\"output_messages\":null") }
        buffer.writeStaticString(",\"parallel_tool_calls\":true,\"temperature\":")
        buffer.writeJSONDouble(responses.temperature ?? 1.0)
        buffer.writeStaticString(",\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":")
        buffer.writeJSONDouble(responses.topP ?? 1.0)
        buffer.writeStaticString(",\"background\":false")
        if streamed { buffer.writeStaticString(",\"conversation\":null") }
        buffer.writeStaticString(",\"max_output_tokens\":")
        buffer.writeJSONInteger(maxOutputTokens)
        buffer.writeStaticString(",\"max_tool_calls\":null,\"previous_response_id\":null,\"prompt\":null")
        if streamed { buffer.writeStaticString(",\"prompt_cache_key\":null") }
        buffer.writeStaticString(",\"reasoning\":null")
        if streamed { buffer.writeStaticString(",\"safety_identifier\":null") }
        buffer.writeStaticString(finished ? ",\"service_tier\":\"auto\",\"status\":\"completed\"" : ",\"service_tier\":\"auto\",\"status\":\"in_progress\"")
        buffer.writeStaticString(",\"text\":null,\"top_logprobs\":null,\"truncation\":\"disabled\",\"usage\":")
        if finished {
            let output = choice?.emitted ?? 0
            // The Responses API always reports cached prompt tokens (no flag needed, unlike chat).
            let cached = choice?.cachedTokens ?? 0
            buffer.writeStaticString("{\"input_tokens\":")
            buffer.writeJSONInteger(promptTokens)
            buffer.writeStaticString(",\"input_tokens_details\":{\"cached_tokens\":")
            buffer.writeJSONInteger(cached)
            buffer.writeStaticString("},\"output_tokens\":")
            buffer.writeJSONInteger(output)
            buffer.writeStaticString(",\"output_tokens_details\":{\"reasoning_tokens\":0,\"tool_output_tokens\":0},\"total_tokens\":")
            buffer.writeJSONInteger(promptTokens + output)
            buffer.writeStaticString("}")
        } else {
            buffer.writeStaticString("null")
        }
        buffer.writeStaticString(",\"user\":null")
        if streamed { buffer.writeStaticString(",\"input_messages\":null,\"output_messages\":null") }
        buffer.writeStaticString("}")
    }
}
