import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP/1.1 request to a fleet's admin API, on SwiftNIO: its status and body. (Foundation's
/// URLSession would link libcurl into a binary that otherwise needs only the C runtime.)
enum AdminClient {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func send(_ method: HTTPMethod, _ url: String, token: String?, timeout: TimeAmount = .seconds(30)) async throws -> (status: Int, body: [UInt8]) {
        guard let parsed = URL(string: url), parsed.scheme == "http", let host = parsed.host, !host.isEmpty else {
            throw Failure(description: "bad admin URL \(url) (http://HOST:PORT)")
        }
        let port = parsed.port ?? 80
        var target = parsed.path.isEmpty ? "/" : parsed.path
        if let query = parsed.query { target += "?" + query }
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: (Int, [UInt8]).self)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                    }
                }
                .connect(host: host, port: port)
                .get()
        } catch {
            promise.fail(error)
            throw error
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: target)
        head.headers.add(name: "host", value: "\(host):\(port)")
        head.headers.add(name: "content-length", value: "0")
        head.headers.add(name: "connection", value: "close")
        if let token { head.headers.add(name: "authorization", value: "Bearer \(token)") }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        let deadline = channel.eventLoop.scheduleTask(in: timeout) { promise.fail(Failure(description: "no answer within \(timeout.nanoseconds / 1_000_000_000) s")) }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        let (status, body) = try await promise.futureResult.get()
        return (status, body)
    }

    /// Collects one response; fails the promise if the connection ends before it does.
    private final class ResponseCollector: ChannelInboundHandler {
        typealias InboundIn = HTTPClientResponsePart
        let promise: EventLoopPromise<(Int, [UInt8])>
        var status = 0
        var body: [UInt8] = []
        var done = false

        init(promise: EventLoopPromise<(Int, [UInt8])>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): status = Int(head.status.code)
            case .body(var buffer):
                // The admin API answers with a pod list; bound what is kept all the same.
                if body.count < 16 << 20 { body += buffer.readBytes(length: buffer.readableBytes) ?? [] }
            case .end:
                done = true
                promise.succeed((status, body))
            }
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            if !done { done = true; promise.fail(error) }
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            if !done { done = true; promise.fail(Failure(description: "connection closed before an answer")) }
        }
    }
}
