import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A bare TCP client for what an HTTP client library will not send: a head one byte at a
/// time, a body that stops, an idle connection. It records what the server sent and when the
/// server closed the connection.
public final class RawConnection: Sendable {
    private let channel: Channel
    private let received: NIOLockedValueBox<[UInt8]>

    private init(channel: Channel, received: NIOLockedValueBox<[UInt8]>) {
        self.channel = channel
        self.received = received
    }

    public static func open(port: Int, host: String = "127.0.0.1") async throws -> RawConnection {
        let received = NIOLockedValueBox<[UInt8]>([])
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(received: received)) }
            }
            .connect(host: host, port: port)
            .get()
        return RawConnection(channel: channel, received: received)
    }

    /// Sends bytes; fails once the server has closed the connection.
    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// Whether the server has closed the connection.
    public var isClosed: Bool { !channel.isActive }

    /// What the server sent so far.
    public var text: String { String(decoding: received.withLockedValue { $0 }, as: UTF8.self) }

    /// Waits until the server closes the connection, or `limit` passes; returns whether it closed.
    public func waitForClose(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while channel.isActive, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return !channel.isActive
    }

    /// Waits until the server sent `needle`, closed the connection, or `limit` passed.
    public func waitFor(_ needle: String, within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while !text.contains(needle), channel.isActive, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return text.contains(needle)
    }

    public func close() async {
        try? await channel.close()
    }

    private final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<[UInt8]>
        init(received: NIOLockedValueBox<[UInt8]>) { self.received = received }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            received.withLockedValue { $0 += buffer.readableBytesView }
        }
    }
}
