import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Writes one HTTP response on a connection. Confined to the connection's event loop.
public final class ResponseWriter {
    private let context: ChannelHandlerContext
    private let keepAlive: Bool
    private let onEnd: () -> Void
    /// The response's HTTP version (see `HTTPRequestHandler.answersInClientVersion`).
    private let version: HTTPVersion
    public var allocator: ByteBufferAllocator { context.channel.allocator }
    public var eventLoop: EventLoop { context.eventLoop }
    /// Whether the client is taking what was written (false while the socket buffer is full).
    public var isWritable: Bool { context.channel.isWritable }

    /// Whether the connection must close once this response is out, decided as late as its
    /// last write (a pipelined request's parse error arrives while that write is under way).
    private let closesAfterward: () -> Bool

    init(
        context: ChannelHandlerContext, keepAlive: Bool, version: HTTPVersion = .http1_1, closesAfterward: @escaping () -> Bool = { false },
        onEnd: @escaping () -> Void
    ) {
        self.context = context
        self.keepAlive = keepAlive
        self.version = version
        self.closesAfterward = closesAfterward
        self.onEnd = onEnd
    }

    /// Starts a response; a nil content type sends none (vLLM's /health and LoRA routes).
    public func writeHead(status: HTTPResponseStatus, contentType: String?, contentLength: Int?, extraHeaders: [(String, String)] = []) {
        var headers = HTTPHeaders()
        if let contentType { headers.add(name: "content-type", value: contentType) }
        if let contentLength { headers.add(name: "content-length", value: String(contentLength)) }
        for (name, value) in extraHeaders { headers.add(name: name, value: value) }
        writeHead(status: status, headers: headers)
    }

    /// Starts a response with the given headers (a body without `content-length` is sent
    /// chunked); `connection: close` is added when the connection will not be kept.
    public func writeHead(status: HTTPResponseStatus, headers: HTTPHeaders) {
        var headers = headers
        if !keepAlive { headers.replaceOrAdd(name: "connection", value: "close") }
        onHead?(status)
        onHead = nil
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
    }

    /// Called once, as the response starts (the access log's moment, as uvicorn's).
    var onHead: ((HTTPResponseStatus) -> Void)?

    /// Chaos: after this many more body chunks the connection is cut, mid-response (0 cuts the
    /// body of a whole response before it is sent).
    public var cutAfterBodyChunks: Int?

    /// One chunk of a streamed body, flushed at once unless told otherwise (then `flush()`).
    public func writeBody(_ buffer: ByteBuffer, flush: Bool = true) {
        if let remaining = cutAfterBodyChunks {
            guard remaining > 0 else { return abort() }
            cutAfterBodyChunks = remaining - 1
        }
        let part = NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer)))
        if flush { context.writeAndFlush(part, promise: nil) } else { context.write(part, promise: nil) }
    }

    public func flush() { context.flush() }

    /// Ends the connection at once, mid-response: how an HTTP/1.1 server says a response with a
    /// known length will not be completed.
    public func abort() {
        context.close(promise: nil)
        onEnd()
    }

    public func writeBodyAndEnd(_ buffer: ByteBuffer) {
        if cutAfterBodyChunks != nil { return abort() }
        if buffer.readableBytes > 0 {
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        }
        let keepAlive = self.keepAlive
        let closesAfterward = self.closesAfterward
        let channel = context.channel
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
            if !keepAlive || closesAfterward() { channel.close(promise: nil) }
        }
        onEnd()
    }

    /// A complete response with a body.
    public func respond(status: HTTPResponseStatus, contentType: String?, body: ByteBuffer, extraHeaders: [(String, String)] = []) {
        writeHead(status: status, contentType: contentType, contentLength: body.readableBytes, extraHeaders: extraHeaders)
        writeBodyAndEnd(body)
    }

    public func respond(_ error: APIError, extraHeaders: [(String, String)] = []) {
        respond(status: HTTPResponseStatus(statusCode: error.status), contentType: "application/json", body: error.body(allocator: allocator), extraHeaders: extraHeaders)
    }
}

/// What a route needs to know about the request it serves.
public struct IncomingRequest {
    public var method: HTTPMethod
    /// The request target as sent, query included.
    public var uri: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    public var version: HTTPVersion
    /// What read the body as it arrived, when the router asked for one (`bodyReader(for:)`).
    public var bodyReader: (any RequestBodyReader)?

    /// The URI without its query.
    public var path: Substring { uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? Substring(uri) }
}

/// A response still being written after `route` returned; cancelled when the client goes away.
public protocol InFlightResponse: AnyObject {
    var isDone: Bool { get }
    func cancel()
    /// The client's connection became writable again, or stopped being so.
    func clientWritabilityChanged(_ writable: Bool)
}

extension InFlightResponse {
    public func clientWritabilityChanged(_ writable: Bool) {}
}

/// Reads a request's body piece by piece as it arrives, before the request is handed over whole
/// (the gateway scans bodies so, rather than after they are complete).
public protocol RequestBodyReader: AnyObject {
    func read(_ piece: ByteBuffer)
}

/// Serves whole requests: what `HTTPRequestHandler` hands each collected request to.
public protocol HTTPRequestRouter: AnyObject {
    /// Bodies above this are refused with 413.
    var maxBodyBytes: Int { get }
    /// What should read this request's body as it arrives (nil: nothing; it is only collected).
    func bodyReader(for head: HTTPRequestHead) -> (any RequestBodyReader)?
    /// Serves one request; returns the response when it outlives this call.
    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)?
    /// Where each request's access line goes as its response starts (nil: nowhere).
    var accessLog: Logger? { get }
}

extension HTTPRequestRouter {
    public var accessLog: Logger? { nil }
    public func bodyReader(for head: HTTPRequestHead) -> (any RequestBodyReader)? { nil }
}

/// The HTTP/1.1 connection handler shared by the emulated server, the gateway and the small
/// listeners: collects a request (refusing bodies over the limit with 413 and heads over the
/// limits with 431), hands it to the router, cancels the response in flight when the client
/// goes away, and closes connections that send too slowly or sit idle too long.
public final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias OutboundOut = HTTPServerResponsePart

    private let router: any HTTPRequestRouter
    private let limits: ConnectionLimits
    /// Answer an HTTP/1.0 client in HTTP/1.0, so a body of unknown length ends with the
    /// connection rather than in chunks it cannot read (as nginx does). Off, every answer is
    /// HTTP/1.1, chunked when needed, as uvicorn answers (vLLM).
    private let answersInClientVersion: Bool
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var bodyReader: (any RequestBodyReader)?
    /// The connection is ending (a refusal, a timeout, a malformed request): nothing more it
    /// sends is read as a request.
    private var closing = false
    /// Bytes arrived since the last request ended: the start of the next one.
    private var nextRequestStarted = false
    private var inFlight: (any InFlightResponse)?
    private var inFlightNumber = 0
    private var requestNumber = 0

    /// Where the connection is in its request cycle; each phase but `responding` has a deadline.
    private enum Phase {
        /// Waiting for a request's first byte (a new or kept-alive connection).
        case idle
        case receivingHead
        case receivingBody
        /// A request was handed over; the response's own timeouts apply.
        case responding
    }

    private var phase = Phase.idle
    private var deadline: NIODeadline?
    /// The one scheduled deadline check; transitions move `deadline` and reschedule only when
    /// it moved earlier, so a busy connection does not schedule a timer per request.
    private var check: Scheduled<Void>?
    private var checkAt: NIODeadline?
    private var context: ChannelHandlerContext?
    /// The handler in front of the codec, through which raw bytes reach the socket.
    weak var observer: RequestBytesObserver?

    public init(router: any HTTPRequestRouter, limits: ConnectionLimits, answersInClientVersion: Bool = false) {
        self.router = router
        self.limits = limits
        self.answersInClientVersion = answersInClientVersion
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        enter(.idle, limit: limits.idleTimeout)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        self.context = nil
    }

    /// Bytes arrived (seen before the HTTP decoder): in an idle connection, a request's first.
    func requestBytesArrived() {
        nextRequestStarted = true
        if case .idle = phase { enter(.receivingHead, limit: limits.requestHeadersTimeout) }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body = nil
            bodyReader = router.bodyReader(for: requestHead)
            enter(.receivingBody, limit: limits.requestBodyTimeout)
            if let refusal = headRefusal(requestHead.headers) {
                refuse(context: context, refusal)
            } else if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > router.maxBodyBytes {
                refuseTooLarge(context: context, size: length)
            } else if requestHead.method == .POST, requestHead.headers.first(name: "expect")?.lowercased() == "100-continue" {
                // As uvicorn: tell the client to send the body rather than make it wait.
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            }
        case .body(var chunk):
            bodyReader?.read(chunk)
            if body == nil {
                // A body in several reads is collected in one buffer of its declared length, so
                // it is copied once rather than again at each doubling (up to 1 MiB reserved
                // ahead: a declared length is only a claim).
                let declared = head?.headers.first(name: "content-length").flatMap(Int.init) ?? 0
                if declared > chunk.readableBytes {
                    var collected = context.channel.allocator.buffer(capacity: min(declared, 1 << 20))
                    collected.writeBuffer(&chunk)
                    body = collected
                } else {
                    body = chunk
                }
            } else {
                body!.writeBuffer(&chunk)
            }
            if body!.readableBytes > router.maxBodyBytes { refuseTooLarge(context: context, size: body!.readableBytes) }
        case .end:
            guard let requestHead = head else { return }
            nextRequestStarted = false
            let request = IncomingRequest(
                method: requestHead.method, uri: requestHead.uri, headers: requestHead.headers,
                body: body ?? context.channel.allocator.buffer(capacity: 0), version: requestHead.version, bodyReader: bodyReader)
            head = nil
            body = nil
            bodyReader = nil
            enter(.responding, limit: nil)
            // The pipeline handler may hand over the next pipelined request from inside this
            // response's final write, so a response only clears the in-flight slot it owns.
            requestNumber += 1
            let number = requestNumber
            // uvicorn closes HTTP/1.0 connections after each response.
            let keepAlive = requestHead.version.minor >= 1 && requestHead.isKeepAlive
            let version: HTTPVersion = answersInClientVersion && requestHead.version.minor == 0 ? .http1_0 : .http1_1
            let writer = ResponseWriter(
                context: context, keepAlive: keepAlive, version: version, closesAfterward: { [weak self] in self?.closing ?? true }
            ) { [weak self] in
                guard let self else { return }
                if self.inFlightNumber == number { self.inFlight = nil }
                // Unless the next pipelined request was handed over during the final write. Part
                // of the next head may already be here: its headers' time runs from now.
                if self.requestNumber == number, case .responding = self.phase {
                    if self.nextRequestStarted {
                        self.enter(.receivingHead, limit: self.limits.requestHeadersTimeout)
                    } else {
                        self.enter(.idle, limit: self.limits.idleTimeout)
                    }
                }
            }
            if let log = router.accessLog {
                // uvicorn's access line: the client, the request line, the status.
                let client = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "-"
                let line = "\(requestHead.method.rawValue) \(requestHead.uri) HTTP/\(requestHead.version.major).\(requestHead.version.minor)"
                writer.onHead = { status in log.info("\(client) - \"\(line)\" \(status.code) \(status.reasonPhrase)") }
            }
            let responder = router.route(request, writer: writer)
            if let responder, !responder.isDone {
                inFlight = responder
                inFlightNumber = number
            }
        }
    }

    /// 431 for a head over the header limits (Envoy's answer; the count as its `max_headers_count`).
    private func headRefusal(_ headers: HTTPHeaders) -> APIError? {
        var bytes = 0
        var count = 0
        for (name, value) in headers {
            bytes += name.utf8.count + value.utf8.count
            count += 1
        }
        guard bytes > limits.maxHeaderBytes || count > limits.maxHeaderCount else { return nil }
        let what = count > limits.maxHeaderCount
            ? "\(count) headers exceed the limit of \(limits.maxHeaderCount)"
            : "\(bytes) bytes of headers exceed the limit of \(limits.maxHeaderBytes)"
        return APIError(status: 431, type: "RequestHeaderFieldsTooLarge", message: "Request header fields too large: \(what).")
    }

    private func refuseTooLarge(context: ChannelHandlerContext, size: Int) {
        refuse(context: context, APIError(
            status: 413, type: "RequestEntityTooLarge",
            message: "Request body of \(size) bytes exceeds the limit of \(router.maxBodyBytes) bytes.", param: nil))
    }

    /// Answers before the request was read whole, and closes the connection after.
    private func refuse(context: ChannelHandlerContext, _ error: APIError) {
        closing = true
        head = nil
        body = nil
        enter(.responding, limit: nil)
        let writer = ResponseWriter(context: context, keepAlive: false) {}
        writer.respond(error)
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        inFlight?.clientWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
        inFlight?.cancel()
        inFlight = nil
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A malformed request ends the connection; the server goes on.
        if let parserError = error as? HTTPParserError {
            guard !closing else { return }
            closing = true
            if case .responding = phase {
                // NIO holds a pipelined request's parse error back until the response before it
                // is written, and hands it over during that response's last write: the response
                // goes out whole first, then the connection closes (`closesAfterward`).
                return
            }
            // No response has started: answer it (431 for a head too large for the parser,
            // else 400), then close.
            let status: HTTPResponseStatus = parserError == .headerOverflow ? .requestHeaderFieldsTooLarge : .badRequest
            let headers = HTTPHeaders([("connection", "close"), ("content-length", "0")])
            let channel = context.channel
            context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        inFlight?.cancel()
        inFlight = nil
        context.close(promise: nil)
    }

    // MARK: Timeouts

    private func enter(_ next: Phase, limit: TimeAmount?) {
        phase = next
        guard let limit, let context else {
            deadline = nil
            return
        }
        let due = NIODeadline.now() + limit
        deadline = due
        if let checkAt, checkAt <= due { return }
        schedule(at: due, context: context)
    }

    private func schedule(at due: NIODeadline, context: ChannelHandlerContext) {
        check?.cancel()
        checkAt = due
        check = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [weak self] in self?.checkDeadline() }
    }

    private func checkDeadline() {
        check = nil
        checkAt = nil
        guard let deadline, let context else { return }
        guard deadline <= .now() else { return schedule(at: deadline, context: context) }
        switch phase {
        case .receivingBody where !closing:
            // The head was read: tell the client why (Envoy's 408 "request timeout").
            refuse(context: context, APIError(status: 408, type: "RequestTimeout", message: "request timeout"))
        case .receivingHead:
            // No request was parsed, so the answer (Envoy's 408 "request header timeout") goes
            // out as raw bytes, beside the HTTP codec, which has no request to answer.
            let error = APIError(status: 408, type: "RequestTimeout", message: "request header timeout")
            var bytes = context.channel.allocator.buffer(capacity: 256)
            let body = error.body(allocator: context.channel.allocator)
            bytes.writeString("HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: \(body.readableBytes)\r\nconnection: close\r\n\r\n")
            bytes.writeImmutableBuffer(body)
            enter(.responding, limit: nil)
            closing = true
            if let observer { observer.writeAndClose(bytes) } else { context.close(promise: nil) }
        case .idle, .receivingBody, .responding:
            context.close(promise: nil)
        }
    }
}

/// Sees a connection's raw bytes before the HTTP decoder, so the request-headers timeout runs
/// from a request's first byte and an idle connection is told apart from a slow one.
final class RequestBytesObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let handler: HTTPRequestHandler
    private var context: ChannelHandlerContext?

    init(handler: HTTPRequestHandler) { self.handler = handler }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    /// Writes bytes straight to the socket, past the HTTP codec, then closes.
    func writeAndClose(_ bytes: ByteBuffer) {
        guard let context else { return }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(bytes)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        handler.requestBytesArrived()
        context.fireChannelRead(data)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// The HTTP/1.1 server pipeline every listener of ours uses: NIO's codec with pipelining
    /// assistance, then `HTTPRequestHandler` (which answers protocol errors itself, with 431
    /// for oversized heads), with the limits' timeouts.
    public func addHTTPServerHandlers(
        router: any HTTPRequestRouter, limits: ConnectionLimits, tls: NIOSSLContext? = nil, answersInClientVersion: Bool = false,
        outboundHeaderValidation: Bool = true
    ) throws {
        let handler = HTTPRequestHandler(router: router, limits: limits, answersInClientVersion: answersInClientVersion)
        try configureHTTPServerPipeline(
            withPipeliningAssistance: true, withServerUpgrade: nil, withErrorHandling: false,
            withOutboundHeaderValidation: outboundHeaderValidation)
        let observer = RequestBytesObserver(handler: handler)
        handler.observer = observer
        try addHandler(observer, position: .first)
        // In front of everything: the observer and the codec see decrypted bytes, and the raw
        // answers the observer writes are encrypted.
        if let tls { try addHandler(NIOSSLServerHandler(context: tls), position: .first) }
        try addHandler(handler)
    }
}

/// A small HTTP/1.1 listener: every connection gets its own router from `makeRouter` (admin
/// and metrics ports; the model servers and the gateway tune their listeners themselves).
public enum HTTPListener {
    public static func bind(
        host: String, port: Int, group: EventLoopGroup, limits: ConnectionLimits = .admin,
        makeRouter: @escaping @Sendable () -> any HTTPRequestRouter
    ) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { AcceptGuard.install(on: $0) }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPServerHandlers(router: makeRouter(), limits: limits)
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}
