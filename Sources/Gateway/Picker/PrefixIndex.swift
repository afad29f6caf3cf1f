import InferenceAPI

/// GIE's approximate prefix index (`approx-prefix-cache-producer`): which endpoint was last sent
/// which prompt blocks (hashed as `PrefixHasher` says); each endpoint keeps an LRU of hashes,
/// and a reverse map answers "who holds this block".
public struct PrefixIndex: Sendable {
    /// How a request's prefix text becomes block hashes.
    public let hasher: PrefixHasher
    /// Hashes kept per endpoint (`lruCapacityPerServer`).
    public var capacityPerEndpoint: Int
    /// An endpoint's count of blocks sent to it, telling a block's latest send from earlier,
    /// stale entries of its LRU. 32 bits, wrapping: a stale entry is evicted or compacted away
    /// within a few LRU capacities of sends, long before the count comes round to it again;
    /// and half the width keeps a thousand-endpoint index (tens of millions of blocks) smaller.
    typealias Use = UInt32

    /// Who holds each block, and when each holder last got it: one table serves both the
    /// "who holds this block" lookups and the endpoints' LRUs. Endpoints are numbered as first seen.
    /// A block almost always has one holder, kept in its 16-byte slot (a request of distinct
    /// blocks adds and evicts hundreds of them, each a cache miss: the smaller the table, the
    /// fewer); a block held by several endpoints (a shared system prompt) lists them in `shared`.
    private var holders = HashKeyedTable<Holding>(filler: .none)
    private var shared = HashKeyedTable<[Holding]>(filler: [])
    private var endpointNumbers: [String: Int32] = [:]
    private var addresses: [String] = []
    /// Each endpoint's blocks in the order it got them, by its number.
    private var lru: [LRU] = []

    public init(blockSizeTokens: Int = 16, maxPrefixBlocksToMatch: Int = 256, capacityPerEndpoint: Int = 31_250) {
        hasher = PrefixHasher(blockSizeTokens: blockSizeTokens, maxPrefixBlocksToMatch: maxPrefixBlocksToMatch)
        // At most 2^28 blocks an endpoint (8 GiB of prompt text): `Use` relies on it.
        self.capacityPerEndpoint = min(capacityPerEndpoint, 1 << 28)
    }

    /// Matched blocks per endpoint address: walking from the first block, stopping at the first
    /// block no endpoint holds, counting for every holder (GIE's `matchLongestPrefix`).
    public func matches(_ hashes: [UInt64]) -> [String: Int] {
        var counts: [Int32: Int] = [:]
        for hash in hashes {
            guard let holding = holders[hash] else { break }
            if holding.isShared {
                for holder in shared[hash] ?? [] { counts[holder.endpoint, default: 0] += 1 }
            } else {
                counts[holding.endpoint, default: 0] += 1
            }
        }
        return Dictionary(uniqueKeysWithValues: counts.map { (addresses[Int($0.key)], $0.value) })
    }

    /// Records that `address` was sent these blocks (after a pick).
    public mutating func add(_ hashes: [UInt64], to address: String) {
        let endpoint = number(of: address)
        holders.preload(hashes)
        // The blocks these adds will evict, too: their misses overlap as well.
        let evictions = lru[Int(endpoint)].count + hashes.count - capacityPerEndpoint
        if evictions > 0 { holders.preload(lru[Int(endpoint)].entries.prefix(evictions).lazy.map(\.hash)) }
        for hash in hashes {
            let use = lru[Int(endpoint)].record(hash)
            if touch(hash, by: Holding(endpoint: endpoint, use: use)) {
                lru[Int(endpoint)].count += 1
                if lru[Int(endpoint)].count > capacityPerEndpoint { evictOldest(of: endpoint) }
            } else if lru[Int(endpoint)].staleEntries > lru[Int(endpoint)].count + 1024 {
                dropStaleEntries(of: endpoint)
            }
        }
    }

    /// Forgets an endpoint that left the pool.
    public mutating func remove(_ address: String) {
        guard let endpoint = endpointNumbers[address] else { return }
        for entry in lru[Int(endpoint)].entries { release(entry, from: endpoint) }
        lru[Int(endpoint)] = LRU()
    }

    /// Drops the endpoint's least recently sent block: the oldest entry of its order that is
    /// still its latest use of that block (later uses left stale entries behind).
    private mutating func evictOldest(of endpoint: Int32) {
        while let entry = lru[Int(endpoint)].popOldest() {
            guard release(entry, from: endpoint) else { continue }
            lru[Int(endpoint)].count -= 1
            return
        }
    }

    /// Blocks sent again and again (a shared system prompt) leave an entry per send; past as
    /// many stale entries as live ones, only the live ones are kept.
    private mutating func dropStaleEntries(of endpoint: Int32) {
        let live = lru[Int(endpoint)].entries.filter { lastUse(of: $0.hash, by: endpoint) == $0.use }
        lru[Int(endpoint)].replaceEntries(with: live)
    }

    private mutating func number(of address: String) -> Int32 {
        if let number = endpointNumbers[address] { return number }
        let number = Int32(addresses.count)
        endpointNumbers[address] = number
        addresses.append(address)
        lru.append(LRU())
        return number
    }

    /// When the endpoint last got the block, if it holds it.
    private func lastUse(of hash: UInt64, by endpoint: Int32) -> Use? {
        guard let holding = holders[hash] else { return nil }
        if !holding.isShared { return holding.endpoint == endpoint ? holding.use : nil }
        return shared[hash]?.first { $0.endpoint == endpoint }?.use
    }

    /// Marks the block as held by `holder` since its use; true when the endpoint did not hold
    /// it before. One probe of the table when the block has at most this one holder.
    private mutating func touch(_ hash: UInt64, by holder: Holding) -> Bool {
        let previous = holders.update(hash, default: .none) { holding in
            let previous = holding
            if holding.isNone || holding.endpoint == holder.endpoint { holding = holder } else { holding = .sharedMarker }
            return previous
        }
        if previous.isNone { return true }
        if previous.endpoint == holder.endpoint { return false }
        if !previous.isShared {
            shared[hash] = [previous, holder]
            return true
        }
        return shared.update(hash, default: []) { holders in
            if let index = holders.firstIndex(where: { $0.endpoint == holder.endpoint }) {
                holders[index].use = holder.use
                return false
            }
            holders.append(holder)
            return true
        }
    }

    /// Releases the entry's block from the endpoint if the entry is its latest use of it (a
    /// lookup, and the removal of a block whose one holder goes, which finds its slot in
    /// cache); false for a stale entry.
    @discardableResult
    private mutating func release(_ entry: (hash: UInt64, use: Use), from endpoint: Int32) -> Bool {
        guard let holding = holders[entry.hash] else { return false }
        if !holding.isShared {
            guard holding == Holding(endpoint: endpoint, use: entry.use) else { return false }
            holders.removeValue(forKey: entry.hash)
            return true
        }
        let released: (Bool, last: Holding?)? = shared.modify(entry.hash) { holders in
            guard let index = holders.firstIndex(where: { $0.endpoint == endpoint }), holders[index].use == entry.use else { return (false, nil) }
            holders.remove(at: index)
            return (true, holders.count == 1 ? holders[0] : nil)
        }
        guard let released, released.0 else { return false }
        if let last = released.last {
            shared.removeValue(forKey: entry.hash)
            holders[entry.hash] = last
        }
        return true
    }

    /// An endpoint holding a block and when it last got it; or, in the block's slot, that the
    /// block has no holder yet or several (listed in `shared`).
    struct Holding: Sendable, Equatable {
        var endpoint: Int32
        var use: Use

        static let none = Holding(endpoint: -1, use: 0)
        static let sharedMarker = Holding(endpoint: -2, use: 0)
        var isNone: Bool { endpoint == -1 }
        var isShared: Bool { endpoint == -2 }
    }

    /// One endpoint's blocks in the order it was sent them, each with its use number; an entry
    /// whose block was sent again later is stale and skipped when evicting.
    struct LRU: Sendable {
        private var order: [(hash: UInt64, use: Use)] = []
        private var head = 0
        private var clock: Use = 0
        /// Distinct blocks the endpoint holds.
        var count = 0

        var entries: ArraySlice<(hash: UInt64, use: Use)> { order[head...] }
        var staleEntries: Int { order.count - head - count }

        /// Keeps only these entries (the live ones, in their order).
        mutating func replaceEntries(with live: [(hash: UInt64, use: Use)]) {
            order = live
            head = 0
        }

        /// Appends a use of `hash` and returns its number.
        mutating func record(_ hash: UInt64) -> Use {
            clock &+= 1
            order.append((hash, clock))
            return clock
        }

        mutating func popOldest() -> (hash: UInt64, use: Use)? {
            guard head < order.count else { return nil }
            defer {
                head += 1
                if head > 1024, head * 2 > order.count {
                    order.removeFirst(head)
                    head = 0
                }
            }
            return order[head]
        }
    }
}

/// How GIE's prefix producer cuts a prompt into blocks and hashes them: blocks of
/// `blockSizeTokens × 4` characters, at most `maxPrefixBlocksToMatch` of them, chained with
/// xxhash64 (`h0 = xxhash(model)`, `h_i = xxhash(block_i ‖ littleEndian64(h_{i−1}))`). Apart from the index, so that hashes can be made where the
/// index is not (the simulator makes them ahead, on another thread).
public struct PrefixHasher: Sendable {
    public let blockSizeTokens: Int
    public let maxPrefixBlocksToMatch: Int
    static let charactersPerToken = 4

    public init(blockSizeTokens: Int = 16, maxPrefixBlocksToMatch: Int = 256) {
        self.blockSizeTokens = blockSizeTokens
        self.maxPrefixBlocksToMatch = maxPrefixBlocksToMatch
    }

    /// The most of a prefix text that is hashed, in bytes.
    public var textLimit: Int { maxPrefixBlocksToMatch * blockSizeTokens * Self.charactersPerToken }

    /// The chained block hashes of a request's prefix text; none under one block.
    public func hashes(model: String, text: String) -> [UInt64] {
        let blockCharacters = blockSizeTokens * Self.charactersPerToken
        let blocks = min(text.utf8.count / blockCharacters, maxPrefixBlocksToMatch)
        guard blocks > 0 else { return [] }
        var previous = XXHash64.hash(Array(model.utf8))
        var result: [UInt64] = []
        result.reserveCapacity(blocks)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(blockCharacters + 8)
        // The text's own UTF-8 bytes, read in place.
        var text = text
        text.withUTF8 { bytes in
            for block in 0..<blocks {
                buffer.removeAll(keepingCapacity: true)
                buffer.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[(block * blockCharacters)..<((block + 1) * blockCharacters)]))
                withUnsafeBytes(of: previous.littleEndian) { buffer.append(contentsOf: $0) }
                previous = XXHash64.hash(buffer)
                result.append(previous)
            }
        }
        return result
    }
}

/// A request's prefix block hashes made ahead of its decision, for the model they were made
/// with: the picker uses them when the request goes to that model, and hashes the text itself
/// when a rewrite or split sends it to another.
public struct PrefixHashes: Sendable {
    public var model: String
    public var hashes: [UInt64]

    public init(model: String, hashes: [UInt64]) {
        self.model = model
        self.hashes = hashes
    }
}
