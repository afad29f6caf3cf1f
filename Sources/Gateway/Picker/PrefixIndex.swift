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

    /// Who holds each block, by endpoint number; endpoints are numbered as first seen.
    private var holders: [UInt64: Holders] = [:]
    private var endpointNumbers: [String: Int32] = [:]
    private var addresses: [String] = []
    /// Each endpoint's LRU, by its number.
    private var lru: [LRU] = []

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
        var counts: [Int32: Int] = [:]
        for hash in hashes {
            guard let holding = holders[hash] else { break }
            holding.forEach { counts[$0, default: 0] += 1 }
        }
        return Dictionary(uniqueKeysWithValues: counts.map { (addresses[Int($0.key)], $0.value) })
    }

    /// Records that `address` was sent these blocks (after a pick).
    public mutating func add(_ hashes: [UInt64], to address: String) {
        let endpoint = number(of: address)
        for hash in hashes {
            if let evicted = lru[Int(endpoint)].touch(hash, capacity: capacityPerEndpoint) { release(evicted, from: endpoint) }
            holders[hash, default: Holders()].insert(endpoint)
        }
    }

    /// Forgets an endpoint that left the pool.
    public mutating func remove(_ address: String) {
        guard let endpoint = endpointNumbers[address] else { return }
        for hash in lru[Int(endpoint)].keys { release(hash, from: endpoint) }
        lru[Int(endpoint)] = LRU()
    }

    private mutating func number(of address: String) -> Int32 {
        if let number = endpointNumbers[address] { return number }
        let number = Int32(addresses.count)
        endpointNumbers[address] = number
        addresses.append(address)
        lru.append(LRU())
        return number
    }

    private mutating func release(_ hash: UInt64, from endpoint: Int32) {
        guard holders[hash]?.remove(endpoint) == true else { return }
        holders[hash] = nil
    }

    /// The endpoints holding a block: almost always one, so without an allocation then.
    struct Holders: Sendable {
        private var first: Int32 = -1
        private var others: [Int32] = []

        func forEach(_ body: (Int32) -> Void) {
            if first >= 0 { body(first) }
            others.forEach(body)
        }

        mutating func insert(_ endpoint: Int32) {
            if first < 0 {
                first = endpoint
            } else if first != endpoint, !others.contains(endpoint) {
                others.append(endpoint)
            }
        }

        /// Removes an endpoint; true when none is left.
        mutating func remove(_ endpoint: Int32) -> Bool {
            if first == endpoint {
                first = others.popLast() ?? -1
            } else {
                others.removeAll { $0 == endpoint }
            }
            return first < 0
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
            let isNew = lastUse.updateValue(clock, forKey: hash) == nil
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
