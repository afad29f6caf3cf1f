import NIOCore
import NIOHTTP1
import NIOPosix

/// What an upstream connection reports about the response to the request it carries.
protocol UpstreamResponseHandler: AnyObject {
    func upstreamHead(_ head: HTTPResponseHead)
    func upstreamBody(_ buffer: ByteBuffer)
    /// The end of one read burst: the time to flush what was forwarded.
    func upstreamReadComplete()
    func upstreamEnd()
    /// The connection closed or failed before the response ended.
    func upstreamFailed()
}

/// One keep-alive HTTP/1.1 connection to an endpoint, confined to its event loop. It carries
/// one exchange at a time and goes back to its pool when a response ends cleanly.
final class UpstreamConnection: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let address: String
    private(set) var channel: Channel?
    private weak var pool: UpstreamPool?
    /// The exchange whose response this connection is reading; nil while idle.
    var exchange: (any UpstreamResponseHandler)?
    /// Whether this connection already served a response (a failure on it may be a keep-alive
    /// race rather than a dead endpoint).
    private(set) var reused = false
    var idleSince = NIODeadline.now()
    private var keepAlive = true
    private var paused = false

    init(address: String, pool: UpstreamPool) {
        self.address = address
        self.pool = pool
    }

    func handlerAdded(context: ChannelHandlerContext) { channel = context.channel }

    /// Sends a whole request; the response arrives through `exchange`.
    func send(_ head: HTTPRequestHead, body: ByteBuffer, to exchange: any UpstreamResponseHandler) {
        guard let channel else { return exchange.upstreamFailed() }
        self.exchange = exchange
        keepAlive = head.isKeepAlive
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if !head.isKeepAlive { keepAlive = false }
            exchange?.upstreamHead(head)
        case .body(let buffer):
            exchange?.upstreamBody(buffer)
        case .end:
            let finished = exchange
            exchange = nil
            reused = true
            resumeReading()
            if keepAlive {
                pool?.release(self)
            } else {
                context.close(promise: nil)
            }
            finished?.upstreamEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        exchange?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        pool?.forget(self)
        let failed = exchange
        exchange = nil
        failed?.upstreamFailed()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// Stops reading the response until `resumeReading` (the client is slower than the pod).
    func pauseReading() {
        guard let channel, !paused else { return }
        paused = true
        // Fails only on a closed channel, which reads nothing more anyway.
        try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    func resumeReading() {
        guard let channel, paused else { return }
        paused = false
        // Fails only on a closed channel: its close ends the exchange, and says so.
        try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        channel.read()
    }

    /// Drops the connection, with whatever it was carrying (a client went away, a timeout).
    func close() {
        exchange = nil
        channel?.close(promise: nil)
    }
}

/// Keep-alive connections to every endpoint, for one event loop: exchanges on that loop borrow
/// them and never cross threads. Idle connections are dropped after `idleTimeout` (under
/// uvicorn's 5 s keep-alive, so vLLM does not close one as it is being reused). Sendable only to
/// be handed to its loop: every use happens there (`acquire` checks).
final class UpstreamPool: @unchecked Sendable {
    let loop: EventLoop
    let connectTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let maxIdlePerEndpoint: Int
    private var idle: [String: [UpstreamConnection]] = [:]

    init(loop: EventLoop, connectTimeout: TimeAmount, idleTimeout: TimeAmount = .seconds(4), maxIdlePerEndpoint: Int = 256) {
        self.loop = loop
        self.connectTimeout = connectTimeout
        self.idleTimeout = idleTimeout
        self.maxIdlePerEndpoint = maxIdlePerEndpoint
    }

    /// Calls back, on this loop, with an idle connection to `address` if one is recent (unless
    /// `fresh`), else a new one.
    func acquire(_ address: String, fresh: Bool = false, _ completion: @escaping (Result<UpstreamConnection, Error>) -> Void) {
        loop.preconditionInEventLoop()
        let oldest = NIODeadline.now() - idleTimeout
        while !fresh, let connection = idle[address]?.popLast() {
            if connection.idleSince > oldest, connection.channel?.isActive == true { return completion(.success(connection)) }
            connection.close()
        }
        guard let (host, port) = Self.split(address) else {
            return completion(.failure(ChannelError.connectPending))
        }
        let connection = UpstreamConnection(address: address, pool: self)
        let handler = NIOLoopBound(connection, eventLoop: loop)
        ClientBootstrap(group: loop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Request headers were validated when the client's request was parsed.
                    try channel.pipeline.syncOperations.addHTTPClientHandlers(enableOutboundHeaderValidation: false)
                    try channel.pipeline.syncOperations.addHandler(handler.value)
                }
            }
            .connect(host: host, port: port)
            .assumeIsolated()
            .whenComplete { result in completion(result.map { _ in connection }) }
    }

    func release(_ connection: UpstreamConnection) {
        connection.idleSince = .now()
        var list = idle[connection.address, default: []]
        guard list.count < maxIdlePerEndpoint else { return connection.close() }
        list.append(connection)
        idle[connection.address] = list
    }

    func forget(_ connection: UpstreamConnection) {
        idle[connection.address]?.removeAll { $0 === connection }
    }

    /// Closes every idle connection (the gateway is stopping).
    func closeAll() {
        for connection in idle.values.joined() { connection.close() }
        idle = [:]
    }

    /// `host:port` or `[v6]:port`.
    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host, port)
    }
}
