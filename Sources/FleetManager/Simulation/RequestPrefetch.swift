import Dispatch

/// A run's requests, made ahead on another thread a chunk at a time while the fleet sends the
/// chunk before. Each request depends only on its number, and making them (a prompt's tokens
/// and text, its prefix block hashes) took a tenth of the fleet's own thread, which everything
/// else in a simulation waits on.
struct RequestPrefetch {
    private let count: Int
    private let make: @Sendable (Int) -> SimulatedRequest
    private var chunk: [SimulatedRequest] = []
    private var chunkStart = 0
    private var following: PendingChunk
    /// Requests a chunk: about a second of a large fleet's arrivals.
    static let chunkSize = 2048

    init(count: Int, make: @escaping @Sendable (Int) -> SimulatedRequest) {
        self.count = count
        self.make = make
        following = PendingChunk(0..<min(count, Self.chunkSize), make: make)
    }

    /// The request numbered `index`; numbers are asked for in order, from 0.
    mutating func request(_ index: Int) -> SimulatedRequest {
        if index == chunkStart + chunk.count {
            chunkStart = index
            chunk = following.take()
            let next = index + chunk.count
            following = PendingChunk(next..<min(count, next + Self.chunkSize), make: make)
        }
        return chunk[index - chunkStart]
    }
}

/// One chunk being made on a queue of its own (which gets a thread of its own however busy
/// the pool is with a catch-up).
private final class PendingChunk: @unchecked Sendable {
    /// Written once on the queue before `done` is signalled; read only after waiting on it.
    private var requests: [SimulatedRequest] = []
    private let done = DispatchSemaphore(value: 0)
    private static let queue = DispatchQueue(label: "understudy.simulation.requests")

    init(_ numbers: Range<Int>, make: @escaping @Sendable (Int) -> SimulatedRequest) {
        Self.queue.async {
            self.requests = numbers.map(make)
            self.done.signal()
        }
    }

    func take() -> [SimulatedRequest] {
        done.wait()
        return requests
    }
}
