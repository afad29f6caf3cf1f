import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A pod that reads whole HTTP/1.1 requests as bytes: it answers `GET /metrics` with an idle
/// vLLM page and any other request with `script` — raw response bytes, written at once — and
/// then closes the connection. For upstream misbehaviour a real server would never show.
struct ScriptedUpstream {
    let channel: Channel
    let inferenceRequests: NIOLockedValueBox<Int>
    /// The head of the last request other than a scrape, as it arrived.
    let lastHead: NIOLockedValueBox<String>
    var address: String { "127.0.0.1:\(channel.localAddress!.port!)" }

    static func start(script: String) async throws -> ScriptedUpstream {
        let count = NIOLockedValueBox(0)
        let lastHead = NIOLockedValueBox("")
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(script: script, count: count, lastHead: lastHead))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return ScriptedUpstream(channel: channel, inferenceRequests: count, lastHead: lastHead)
    }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let script: String
        let count: NIOLockedValueBox<Int>
        let lastHead: NIOLockedValueBox<String>
        var received = ""

        init(script: String, count: NIOLockedValueBox<Int>, lastHead: NIOLockedValueBox<String>) {
            self.script = script
            self.count = count
            self.lastHead = lastHead
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            received += String(buffer: unwrapInboundIn(data))
            while let headEnd = received.range(of: "\r\n\r\n") {
                let head = received[..<headEnd.lowerBound]
                let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                let total = received.distance(from: received.startIndex, to: headEnd.upperBound) + length
                guard received.utf8.count >= total else { return }
                let isMetrics = head.hasPrefix("GET /metrics ")
                received = String(received.dropFirst(total))
                if isMetrics {
                    let page = "vllm:num_requests_waiting{model_name=\"m\"} 0.0\nvllm:num_requests_running{model_name=\"m\"} 0.0\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.0\n"
                    let response = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: \(page.utf8.count)\r\n\r\n" + page
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
                } else {
                    count.withLockedValue { $0 += 1 }
                    lastHead.withLockedValue { $0 = String(head) }
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: script))).whenComplete { _ in context.close(promise: nil) }
                    return
                }
            }
        }
    }
}
