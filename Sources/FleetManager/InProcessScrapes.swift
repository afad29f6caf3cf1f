import FakeVLLM
import Gateway
import NIOConcurrencyHelpers
import NIOCore

/// The gateway's metrics scrapes of in-process pods, made without sockets: each scrape reads
/// the page the pod would serve on `GET /metrics` (the same bytes, the same every-50 ms cadence
/// and staleness), refused when the pod is gone or partitioned, unanswered while it hangs. Two
/// hundred idle pods cost the gateway 4,000 loopback HTTP exchanges a second otherwise.
final class InProcessScrapes: MetricsSource {
    private let servers = NIOLockedValueBox<[String: VLLMServer]>([:])

    func serve(_ address: String, by server: VLLMServer) {
        servers.withLockedValue { $0[address] = server }
    }

    /// The pod at `address` is gone, unless a newer server took the address meanwhile (with
    /// ephemeral ports, another pod may have).
    func forget(_ address: String, ifServedBy server: VLLMServer) {
        servers.withLockedValue { servers in
            if servers[address] === server { servers[address] = nil }
        }
    }

    func scrape(_ address: String, completion: @escaping @Sendable (Result<ByteBuffer, ScrapeFailure>) -> Void) {
        guard let server = servers.withLockedValue({ $0[address] }) else { return completion(.failure(.unreachable)) }
        server.scrapeMetrics { answer in
            switch answer {
            case .page(let page): completion(.success(page))
            case .refused: completion(.failure(.unreachable))
            case .silent: completion(.failure(.timeout))
            }
        }
    }

    func close() {}
}
