import InferenceAPI

/// GIE's approximate prefix index (`approx-prefix-cache-producer`): which endpoint was last sent
/// which prompt blocks. Blocks are `blockSizeTokens × 4` characters; hashes chain with xxhash64
/// (`h0 = xxhash(model)`, `h_i = xxhash(block_i ‖ littleEndian64(h_{i−1}))`); each endpoint keeps
/// an LRU of hashes, and a reverse map answers "who holds this block".
public struct PrefixIndex: Sendable {
    public var blockSizeTokens: Int
    public var maxPrefixBlocksToMatch: Int
    /// Hashes kept per endpoint (`lruCapacityPerServer`).
    public var capacityPerEndpoint: Int
    static let charactersPerToken = 4

    private var holders: [UInt64: Set<String>] = [:]
    private var lru: [String: LRU] = [:]

    public init(blockSizeTokens: Int = 16, maxPrefixBlocksToMatch: Int = 256, capacityPerEndpoint: Int = 31_250) {
        self.blockSizeTokens = blockSizeTokens
        self.maxPrefixBlocksToMatch = maxPrefixBlocksToMatch
        self.capacityPerEndpoint = capacityPerEndpoint
    }

    /// The chained block hashes of a request's prefix text; none under one block.
    public func hashes(model: String, text: String) -> [UInt64] {
        let blockCharacters = blockSizeTokens * Self.charactersPerToken
        let bytes = Array(text.utf8)
        let blocks = min(bytes.count / blockCharacters, maxPrefixBlocksToMatch)
        guard blocks > 0 else { return [] }
        var previous = XXHash64.hash(Array(model.utf8))
        var result: [UInt64] = []
        result.reserveCapacity(blocks)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(blockCharacters + 8)
        for block in 0..<blocks {
            buffer.removeAll(keepingCapacity: true)
            buffer.append(contentsOf: bytes[(block * blockCharacters)..<((block + 1) * blockCharacters)])
            withUnsafeBytes(of: previous.littleEndian) { buffer.append(contentsOf: $0) }
            previous = XXHash64.hash(buffer)
            result.append(previous)
        }
        return result
    }

    /// Matched blocks per endpoint address: walking from the first block, stopping at the first
    /// block no endpoint holds, counting for every holder (GIE's `matchLongestPrefix`).
    public func matches(_ hashes: [UInt64]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for hash in hashes {
            guard let servers = holders[hash], !servers.isEmpty else { break }
            for server in servers { counts[server, default: 0] += 1 }
        }
        return counts
    }

    /// Records that `address` was sent these blocks (after a pick).
    public mutating func add(_ hashes: [UInt64], to address: String) {
        var cache = lru[address] ?? LRU()
        for hash in hashes {
            if let evicted = cache.touch(hash, capacity: capacityPerEndpoint) {
                holders[evicted]?.remove(address)
                if holders[evicted]?.isEmpty == true { holders[evicted] = nil }
            }
            holders[hash, default: []].insert(address)
        }
        lru[address] = cache
    }

    /// Forgets an endpoint that left the pool.
    public mutating func remove(_ address: String) {
        guard let cache = lru.removeValue(forKey: address) else { return }
        for hash in cache.keys {
            holders[hash]?.remove(address)
            if holders[hash]?.isEmpty == true { holders[hash] = nil }
        }
    }

    /// An LRU set of hashes: a recency counter per hash, evicting the least recent.
    struct LRU: Sendable {
        private var lastUse: [UInt64: UInt64] = [:]
        private var order: [(hash: UInt64, use: UInt64)] = []
        private var clock: UInt64 = 0
        private var head = 0

        var keys: Dictionary<UInt64, UInt64>.Keys { lastUse.keys }

        /// Marks `hash` used; returns the hash evicted to stay within `capacity`, if any.
        mutating func touch(_ hash: UInt64, capacity: Int) -> UInt64? {
            clock += 1
            let isNew = lastUse[hash] == nil
            lastUse[hash] = clock
            order.append((hash, clock))
            guard isNew, lastUse.count > capacity else { compactIfNeeded(); return nil }
            // Skip stale entries (re-touched since) to find the least recent live one.
            while head < order.count {
                let entry = order[head]
                head += 1
                if lastUse[entry.hash] == entry.use {
                    lastUse[entry.hash] = nil
                    compactIfNeeded()
                    return entry.hash
                }
            }
            return nil
        }

        private mutating func compactIfNeeded() {
            guard head > 1024, head * 2 > order.count else { return }
            order.removeFirst(head)
            head = 0
        }
    }
}
