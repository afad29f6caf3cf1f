#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// Keeps a listener working when this process runs short of descriptors, in two ways.
///
/// - A connection limit (optional): beyond it a new connection is closed as soon as it is
///   accepted, as Envoy closes connections over a listener's connection limit (its
///   `downstream_cx_overflow`). Clients learn at once; a stack in one process stays clear of its
///   open-file limit instead of running into it.
/// - A pause when accept fails for want of descriptors (EMFILE, ENFILE) or memory. The pending
///   connection keeps the listening socket readable, so without a pause the event loop would
///   call accept again at once, a core spinning until a descriptor frees. (NIO's
///   `AcceptBackoffHandler` only delays the next read request, and after a failed accept the
///   channel asks for none: the spin goes on. Turning `autoRead` off takes the socket out of
///   the poll set.)
///
/// Each connection closed over the limit and each accept refused for want of descriptors is
/// noted as a shortage (`OpenFileLimit.shortages`).
public final class AcceptGuard: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Channel
    public typealias InboundOut = Channel

    /// Adds a guard to a server channel (for `ServerBootstrap.serverChannelInitializer`).
    public static func install(on channel: any Channel, limit: Int? = nil) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(AcceptGuard(limit: limit))
        }
    }

    /// How long accepting pauses after it failed for want of descriptors: short, because
    /// descriptors free as requests end, and meanwhile the backlog holds the waiting clients.
    static let pause = TimeAmount.milliseconds(10)

    private let limit: Int
    private var open = 0
    private var paused = false

    public init(limit: Int? = nil) {
        self.limit = limit ?? .max
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let connection = unwrapInboundIn(data)
        guard open < limit else {
            OpenFileLimit.noteShortage()
            connection.close(promise: nil)
            return
        }
        open += 1
        let loop = context.eventLoop
        let guarded = NIOLoopBound(self, eventLoop: loop)
        connection.closeFuture.whenComplete { _ in loop.execute { guarded.value.open -= 1 } }
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let error = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(error.errnoCode) else {
            return context.fireErrorCaught(error)
        }
        if OpenFileLimit.isExhaustion(error) { OpenFileLimit.noteShortage() }
        guard !paused else { return }
        paused = true
        let channel = context.channel
        // Fails only on a closed listener, which accepts nothing anyway.
        try? channel.syncOptions?.setOption(.autoRead, value: false)
        let guarded = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: Self.pause) {
            guarded.value.paused = false
            // Fails only on a listener closed meanwhile: there is nothing left to resume.
            try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}

@available(*, unavailable)
extension AcceptGuard: Sendable {}
