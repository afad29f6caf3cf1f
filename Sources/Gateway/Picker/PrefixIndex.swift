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
    private var holders = HashKeyedTable<Holders>(filler: Holders())
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
            holding.forEach { counts[$0, default: 0] += 1 }
        }
        return Dictionary(uniqueKeysWithValues: counts.map { (addresses[Int($0.key)], $0.value) })
    }

    /// Records that `address` was sent these blocks (after a pick).
    public mutating func add(_ hashes: [UInt64], to address: String) {
        let endpoint = number(of: address)
        holders.preload(hashes)
        for hash in hashes {
            let use = lru[Int(endpoint)].record(hash)
            // In place: one lookup of the block, whether it is new to the endpoint or not.
            if holders.update(hash, default: Holders(), { $0.touch(endpoint, use: use) }) {
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
        for entry in lru[Int(endpoint)].entries where holders[entry.hash]?.use(of: endpoint) == entry.use {
            release(entry.hash, from: endpoint)
        }
        lru[Int(endpoint)] = LRU()
    }

    /// Drops the endpoint's least recently sent block: the oldest entry of its order that is
    /// still its latest use of that block (later uses left stale entries behind).
    private mutating func evictOldest(of endpoint: Int32) {
        while let entry = lru[Int(endpoint)].popOldest() {
            guard holders[entry.hash]?.use(of: endpoint) == entry.use else { continue }
            release(entry.hash, from: endpoint)
            lru[Int(endpoint)].count -= 1
            return
        }
    }

    /// Blocks sent again and again (a shared system prompt) leave an entry per send; past as
    /// many stale entries as live ones, only the live ones are kept.
    private mutating func dropStaleEntries(of endpoint: Int32) {
        let holders = self.holders
        lru[Int(endpoint)].keep { holders[$0.hash]?.use(of: endpoint) == $0.use }
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
        guard holders.modify(hash, { $0.remove(endpoint) }) == true else { return }
        holders.removeValue(forKey: hash)
    }

    /// The endpoints holding a block and when each last got it: almost always one, so without
    /// an allocation then.
    struct Holders: Sendable {
        private var first: Int32 = -1
        private var firstUse: Use = 0
        private var others: [(endpoint: Int32, use: Use)] = []

        func forEach(_ body: (Int32) -> Void) {
            if first >= 0 { body(first) }
            for other in others { body(other.endpoint) }
        }

        func use(of endpoint: Int32) -> Use? {
            if first == endpoint { return firstUse }
            return others.first { $0.endpoint == endpoint }?.use
        }

        /// Marks the endpoint as holding the block since `use`; true when it did not before.
        mutating func touch(_ endpoint: Int32, use: Use) -> Bool {
            if first < 0 {
                (first, firstUse) = (endpoint, use)
                return true
            }
            if first == endpoint {
                firstUse = use
                return false
            }
            if let index = others.firstIndex(where: { $0.endpoint == endpoint }) {
                others[index].use = use
                return false
            }
            others.append((endpoint, use))
            return true
        }

        /// Removes an endpoint; true when none is left.
        mutating func remove(_ endpoint: Int32) -> Bool {
            if first == endpoint {
                if let last = others.popLast() { (first, firstUse) = last } else { first = -1 }
            } else {
                others.removeAll { $0.endpoint == endpoint }
            }
            return first < 0
        }
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

        mutating func keep(_ isLive: ((hash: UInt64, use: Use)) -> Bool) {
            order = order[head...].filter(isLive)
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
