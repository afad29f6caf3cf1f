import InferenceAPI
import NIOCore

/// One header as Envoy's external processing messages carry it.
public struct ExtProcHeader: Sendable, Equatable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// What the endpoint picker answers on the ext_proc stream, free of protobuf (the gRPC front
/// end turns each into a `ProcessingResponse`).
public enum ExtProcReply: Sendable, Equatable {
    /// The request's headers response: `clear_route_cache`, these headers set (overwriting), and
    /// `destination` in dynamic metadata `envoy.lb` as in the `x-gateway-destination-endpoint`
    /// header.
    case requestHeaders(set: [ExtProcHeader], destination: String)
    /// A piece of the request body to send upstream (`streamed_response`).
    case requestBody(ByteBuffer, endOfStream: Bool)
    /// The response's headers response: these headers set.
    case responseHeaders(set: [ExtProcHeader])
    /// A piece of the response body to send to the client.
    case responseBody(ByteBuffer, endOfStream: Bool)
    case responseTrailers
    /// Answer the client directly, in place of the upstream (GIE's refusals: no headers, the
    /// body `inference error: <Code> - <message>`).
    case immediate(status: Int, body: String)
}

/// One request on Envoy's external processing stream, as GIE's endpoint picker handles it in
/// FULL_DUPLEX_STREAMED mode (docs/ext-proc.md): the request's headers are kept and its body
/// collected; at the body's end the picker decides, and the answer is the headers response (the
/// pick, fallbacks after commas, in the header and in `envoy.lb` metadata) followed by the body,
/// its `model` set to the target, in pieces of at most 62,000 bytes. Responses get their model
/// name written back and their usage read for GIE's metrics. The rules are the built-in proxy's:
/// the same body reading (`InferenceBody`), director, refusals and rewriter.
///
/// Driven by one stream's messages in order; each call returns the replies to send, in order.
public struct ExtProcExchange {
    /// GIE's `BodyByteLimit`: body pieces stay under Envoy's 64 KiB default buffer.
    public static let bodyPieceLimit = 62_000
    /// The longest response body collected to rewrite (as the built-in proxy's).
    static let maxCollectedBytes = ProxyExchangeStateMachine.maxCollectedBytes

    /// Headers the picker reads or owns, and does not echo back (GIE's `IsSystemOwnedHeader`).
    static let systemHeaders = HeaderFilter([
        "x-gateway-inference-objective", "x-gateway-model-name-rewrite", "x-gateway-inference-fairness-id",
        "x-gateway-destination-endpoint-subset", "x-gateway-destination-endpoint", "x-gateway-destination-endpoint-served",
        "content-length",
    ])

    /// What the request routed with.
    private struct Routed {
        var clientModel: String?
        var targetModel: String?
        /// Requests that are not inference requests stay outside GIE's metrics.
        var measured = true
        var started: ContinuousClock.Instant
    }

    /// The response as it passes.
    private struct Response {
        var status: Int
        var eventStream: Bool
        var rewriter: ModelNameRewriter?
        var collected = ByteBuffer()
        var bytes = 0
        var usage = UsageScanner()
    }

    private enum State {
        case awaitingHeaders
        /// The body so far, and its reading as it arrives when it is an inference API's.
        case collectingBody(headers: [ExtProcHeader], body: ByteBuffer, reading: InferenceBody.Reading?)
        case routed(Routed)
        case responding(Routed, Response)
        case done
    }

    private let picker: EndpointPicker
    private let maxBodyBytes: Int
    private var state = State.awaitingHeaders
    /// `x-gateway-destination-endpoint-subset` from `envoy.lb.subset_hint` metadata, when sent.
    public var subsetHint: [String]?
    /// Where the data plane says it sent the request (`x-gateway-destination-endpoint-served`).
    public private(set) var servedEndpoint: String?

    public init(picker: EndpointPicker, maxBodyBytes: Int) {
        self.picker = picker
        self.maxBodyBytes = maxBodyBytes
    }

    public var isDone: Bool { if case .done = state { true } else { false } }

    // MARK: Request

    public mutating func requestHeaders(_ headers: [ExtProcHeader], endOfStream: Bool) -> [ExtProcReply] {
        guard case .awaitingHeaders = state else { return [] }
        guard endOfStream else {
            let shape = headers.first { $0.name == ":path" }.flatMap { InferenceBody.Shape(path: Substring($0.value)) }
            state = .collectingBody(
                headers: headers, body: ByteBuffer(), reading: shape.map { InferenceBody.Reading(shape: $0, prefixLimit: picker.prefixTextLimit) })
            return []
        }
        // No body (a GET such as /v1/models): any endpoint of the pool, as GIE.
        guard let endpoint = picker.pickAny() else {
            return refuse(status: 500, code: "Internal", message: "no pods available in datastore", model: nil)
        }
        state = .routed(Routed(measured: false, started: .now))
        return [.requestHeaders(set: [ExtProcHeader(Self.destinationHeader, endpoint.address)], destination: endpoint.address)]
    }

    /// A piece of the request body. Pieces after the one that ended the body are ignored: Envoy
    /// 1.35–1.37 send the last one again on large bodies (envoyproxy/envoy#46237).
    public mutating func requestBody(_ chunk: ByteBuffer, endOfStream: Bool) -> [ExtProcReply] {
        guard case .collectingBody(let headers, var body, var reading) = state else { return [] }
        state = .done
        guard body.readableBytes + chunk.readableBytes <= maxBodyBytes else {
            return refuse(status: 413, code: "RequestEntityTooLarge", message: "request body larger than \(maxBodyBytes) bytes", model: nil)
        }
        reading?.read(chunk)
        var chunk = chunk
        body.writeBuffer(&chunk)
        guard endOfStream else {
            state = .collectingBody(headers: headers, body: body, reading: reading)
            return []
        }
        return route(headers: headers, body: body, reading: reading)
    }

    private mutating func route(headers: [ExtProcHeader], body: ByteBuffer, reading: InferenceBody.Reading?) -> [ExtProcReply] {
        // Envoy sends HTTP/2's lowercase names; GIE looks them up as sent.
        let header = { (name: String) in headers.first { $0.name == name }?.value }
        guard var reading else {
            // Not an inference API: any endpoint, the body unread (as the built-in proxy).
            guard let endpoint = picker.pickAny() else {
                return refuse(status: 503, code: "ServiceUnavailable", message: "no healthy endpoints in pool \(picker.pool.name)", model: nil)
            }
            state = .routed(Routed(measured: false, started: .now))
            return headersAndBody([endpoint], body: body, headers: headers)
        }
        let inference: InferenceRequest
        switch reading.finish(body, header: header) {
        case .success(let read): inference = read
        case .failure(let unreadable): return refuse(status: 400, code: "BadRequest", message: unreadable.message, model: nil)
        }
        switch picker.decide(inference, subset: subsetHint.map(Set.init)) {
        case .reject(let status, let code, let message):
            picker.metrics.requestRejected(inference.model, nil, code: code)
            state = .done
            return [.immediate(status: status, body: "inference error: \(code) - \(message)")]
        case .route(let endpoints, let targetModel, let clientModel, let priority):
            var body = body
            if targetModel != clientModel, let rewritten = JSONSplice.replacingTopLevelString("model", with: targetModel, in: body) {
                body = rewritten
            }
            picker.metrics.requestStarted(clientModel, targetModel, priority: priority, requestBytes: body.readableBytes)
            state = .routed(Routed(clientModel: clientModel, targetModel: targetModel, started: .now))
            return headersAndBody(endpoints, body: body, headers: headers)
        }
    }

    /// GIE's answer once routed: the headers response, then the body in pieces.
    private func headersAndBody(_ endpoints: [Endpoint], body: ByteBuffer, headers: [ExtProcHeader]) -> [ExtProcReply] {
        let destination = endpoints.map(\.address).joined(separator: ",")
        var set = [ExtProcHeader(Self.destinationHeader, destination)]
        if body.readableBytes > 0 { set.append(ExtProcHeader("Content-Length", String(body.readableBytes))) }
        set += headers.filter { !Self.systemHeaders.drops($0.name) }
        return [.requestHeaders(set: set, destination: destination)] + Self.pieces(of: body, endOfStream: true, as: ExtProcReply.requestBody)
    }

    private mutating func refuse(status: Int, code: String, message: String, model: String?) -> [ExtProcReply] {
        picker.metrics.requestRejected(model, nil, code: code)
        picker.noteRefusal(status: status, code: code, message: message, model: model)
        state = .done
        return [.immediate(status: status, body: "inference error: \(code) - \(message)")]
    }

    // MARK: Response

    /// `served`: `x-gateway-destination-endpoint-served` from the message's `envoy.lb` metadata.
    public mutating func responseHeaders(_ headers: [ExtProcHeader], endOfStream: Bool, served: String?) -> [ExtProcReply] {
        guard case .routed(let routed) = state else { return [] }
        servedEndpoint = served
        let status = headers.first { $0.name == ":status" }.flatMap { Int($0.value) } ?? 0
        let eventStream = headers.first { $0.name == "content-type" }?.value.hasPrefix("text/event-stream") == true
        var rewriter: ModelNameRewriter?
        if let target = routed.targetModel, let client = routed.clientModel, target != client {
            rewriter = ModelNameRewriter(target: target, client: client)
        }
        state = .responding(routed, Response(status: status, eventStream: eventStream, rewriter: rewriter))
        var set = [ExtProcHeader("x-went-into-resp-headers", "true")]
        if picker.verifiesServedEndpoint {
            set.append(ExtProcHeader("x-conformance-test-served-endpoint", served ?? "fail: missing destination endpoint served metadata"))
        }
        set += headers.filter { !Self.systemHeaders.drops($0.name) }
        if endOfStream { finish() }
        return [.responseHeaders(set: set)]
    }

    public mutating func responseBody(_ chunk: ByteBuffer, endOfStream: Bool) -> [ExtProcReply] {
        guard case .responding(let routed, var response) = state else { return [] }
        state = .done
        response.bytes += chunk.readableBytes
        var out: ByteBuffer
        if response.eventStream {
            // A stream passes chunk by chunk: usage read from its events, the model written back.
            response.usage.scan(chunk)
            out = response.rewriter?.feed(chunk) ?? chunk
            if endOfStream, var held = response.rewriter?.finish() { out.writeBuffer(&held) }
        } else {
            // A whole body is collected to its end, then rewritten and sent.
            var chunk = chunk
            response.collected.writeBuffer(&chunk)
            guard response.collected.readableBytes <= Self.maxCollectedBytes else {
                state = .responding(routed, response)
                return fail("upstream response larger than \(Self.maxCollectedBytes) bytes")
            }
            guard endOfStream else {
                state = .responding(routed, response)
                return []
            }
            out = Self.rewritten(&response)
        }
        state = .responding(routed, response)
        if endOfStream { finish() }
        guard out.readableBytes > 0 || endOfStream else { return [] }
        return Self.pieces(of: out, endOfStream: endOfStream, as: ExtProcReply.responseBody)
    }

    /// Trailers end the response: what is held back goes first, without end of stream.
    public mutating func responseTrailers() -> [ExtProcReply] {
        guard case .responding(let routed, var response) = state else { return [] }
        let rest = response.eventStream ? response.rewriter?.finish() ?? ByteBuffer() : Self.rewritten(&response)
        state = .responding(routed, response)
        finish()
        let body = rest.readableBytes > 0 ? Self.pieces(of: rest, endOfStream: false, as: ExtProcReply.responseBody) : []
        return body + [.responseTrailers]
    }

    /// The stream ended (Envoy closed it, or it failed): a request still open was cancelled.
    public mutating func streamEnded() {
        finish(.cancelled)
    }

    /// The request is over: GIE's metrics record how.
    private mutating func finish(_ outcome: GatewayMetrics.Outcome = .success) {
        let routed: Routed
        var response: Response?
        switch state {
        case .routed(let only): routed = only
        case .responding(let both, let answer): (routed, response) = (both, answer)
        case .awaitingHeaders, .collectingBody, .done: return
        }
        state = .done
        if let served = servedEndpoint, let status = response?.status { picker.noteServed(served, status: status) }
        guard routed.measured else { return }
        picker.metrics.requestFinished(
            routed.clientModel, routed.targetModel, outcome: outcome, status: response?.status ?? 0, seconds: routed.started.secondsSince,
            responseBytes: response?.bytes ?? 0, usage: response?.usage.usage)
    }

    /// The response cannot be relayed: the client is answered with 502 in its place.
    private mutating func fail(_ message: String) -> [ExtProcReply] {
        finish(.error("BadGateway"))
        return [.immediate(status: 502, body: "inference error: BadGateway - \(message)")]
    }

    /// A collected body with its model name written back, its usage read.
    private static func rewritten(_ response: inout Response) -> ByteBuffer {
        var body = response.collected
        response.collected = ByteBuffer()
        if var rewriter = response.rewriter {
            body = rewriter.feed(body)
            var tail = rewriter.finish()
            body.writeBuffer(&tail)
        }
        response.usage.scan(body)
        return body
    }

    /// `body` in pieces of at most `bodyPieceLimit` bytes, `endOfStream` on the last (an empty
    /// body is one empty piece).
    private static func pieces(of body: ByteBuffer, endOfStream: Bool, as make: (ByteBuffer, Bool) -> ExtProcReply) -> [ExtProcReply] {
        var body = body
        var replies: [ExtProcReply] = []
        repeat {
            let piece = body.readSlice(length: min(bodyPieceLimit, body.readableBytes))!
            replies.append(make(piece, endOfStream && body.readableBytes == 0))
        } while body.readableBytes > 0
        return replies
    }

    static let destinationHeader = "x-gateway-destination-endpoint"
}

extension ContinuousClock.Instant {
    fileprivate var secondsSince: Double {
        let elapsed = duration(to: .now).components
        return Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    }
}
