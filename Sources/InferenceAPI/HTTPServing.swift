import NIOCore
import NIOHTTP1
import NIOPosix

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

    init(context: ChannelHandlerContext, keepAlive: Bool, version: HTTPVersion = .http1_1, onEnd: @escaping () -> Void) {
        self.context = context
        self.keepAlive = keepAlive
        self.version = version
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
        context.write(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
    }

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
        let channel = context.channel
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
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

/// Serves whole requests: what `HTTPRequestHandler` hands each collected request to.
public protocol HTTPRequestRouter: AnyObject {
    /// Bodies above this are refused with 413.
    var maxBodyBytes: Int { get }
    /// Serves one request; returns the response when it outlives this call.
    func route(_ request: IncomingRequest, writer: ResponseWriter) -> (any InFlightResponse)?
}

/// The HTTP/1.1 connection handler shared by the emulated server and the gateway: collects a
/// request (refusing bodies over the limit with 413), hands it to the router, and cancels the
/// response in flight when the client goes away.
public final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias OutboundOut = HTTPServerResponsePart

    private let router: any HTTPRequestRouter
    /// Answer an HTTP/1.0 client in HTTP/1.0, so a body of unknown length ends with the
    /// connection rather than in chunks it cannot read (as nginx does). Off, every answer is
    /// HTTP/1.1, chunked when needed, as uvicorn answers (vLLM).
    private let answersInClientVersion: Bool
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var refusing = false
    private var inFlight: (any InFlightResponse)?
    private var inFlightNumber = 0
    private var requestNumber = 0

    public init(router: any HTTPRequestRouter, answersInClientVersion: Bool = false) {
        self.router = router
        self.answersInClientVersion = answersInClientVersion
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            refusing = false
            body = nil
            if let length = requestHead.headers.first(name: "content-length").flatMap(Int.init), length > router.maxBodyBytes {
                refuseTooLarge(context: context, size: length)
            } else if requestHead.method == .POST, requestHead.headers.first(name: "expect")?.lowercased() == "100-continue" {
                // As uvicorn: tell the client to send the body rather than make it wait.
                context.writeAndFlush(NIOAny(HTTPServerResponsePart.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            }
        case .body(var chunk):
            guard !refusing else { return }
            if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
            if body!.readableBytes > router.maxBodyBytes { refuseTooLarge(context: context, size: body!.readableBytes) }
        case .end:
            guard !refusing, let requestHead = head else { return }
            let request = IncomingRequest(
                method: requestHead.method, uri: requestHead.uri, headers: requestHead.headers,
                body: body ?? context.channel.allocator.buffer(capacity: 0), version: requestHead.version)
            head = nil
            body = nil
            // The pipeline handler may hand over the next pipelined request from inside this
            // response's final write, so a response only clears the in-flight slot it owns.
            requestNumber += 1
            let number = requestNumber
            // uvicorn closes HTTP/1.0 connections after each response.
            let keepAlive = requestHead.version.minor >= 1 && requestHead.isKeepAlive
            let version: HTTPVersion = answersInClientVersion && requestHead.version.minor == 0 ? .http1_0 : .http1_1
            let writer = ResponseWriter(context: context, keepAlive: keepAlive, version: version) { [weak self] in
                if let self, self.inFlightNumber == number { self.inFlight = nil }
            }
            let responder = router.route(request, writer: writer)
            if let responder, !responder.isDone {
                inFlight = responder
                inFlightNumber = number
            }
        }
    }

    private func refuseTooLarge(context: ChannelHandlerContext, size: Int) {
        refusing = true
        body = nil
        let writer = ResponseWriter(context: context, keepAlive: false) {}
        writer.respond(APIError(
            status: 413, type: "RequestEntityTooLarge",
            message: "Request body of \(size) bytes exceeds the limit of \(router.maxBodyBytes) bytes.", param: nil))
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        inFlight?.clientWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        inFlight?.cancel()
        inFlight = nil
        context.fireChannelInactive()
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A malformed request or a reset: this connection ends, the server goes on.
        inFlight?.cancel()
        inFlight = nil
        context.close(promise: nil)
    }
}

/// A small HTTP/1.1 listener: every connection gets its own router from `makeRouter` (admin
/// and metrics ports; the model servers and the gateway tune their listeners themselves).
public enum HTTPListener {
    public static func bind(
        host: String, port: Int, group: EventLoopGroup, makeRouter: @escaping @Sendable () -> any HTTPRequestRouter
    ) async throws -> Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { AcceptGuard.install(on: $0) }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(router: makeRouter()))
                }
            }
            .bind(host: host, port: port)
            .get()
    }
}
