import InferenceAPI

/// The KV block pool with prefix caching, as vLLM V1's `BlockPool`: reference-counted blocks,
/// a free queue in LRU order that still holds cached blocks until they are reused, and a map
/// from chained block hash to the block holding those tokens.
///
/// Block 0 is reserved as vLLM's null block; usage counts the other blocks, as vLLM 0.11's
/// `get_usage` does (0 when idle, 1 when every usable block is held).
struct BlockPool {
    typealias BlockID = Int32

    let numBlocks: Int
    /// The records of the blocks handed out so far, by ID. A block never used yet comes before
    /// every freed one in vLLM's free queue (the queue starts as all blocks in order and freed
    /// blocks join its tail), so it needs no record until it is taken: a pod's memory grows
    /// with the blocks it has used, and starting a thousand pods writes next to nothing. One
    /// record per block rather than an array per field: taking a block from the queue's head
    /// (the one freed longest ago, cold in the cache) then misses once, not once per field.
    private var blocks: [Block]
    /// The first block never handed out; blocks from here to `numBlocks` are the queue's head.
    private var fresh: Int
    /// The freed part of the free queue, a doubly linked list through the records (−1: none).
    private var freedHead: BlockID = -1
    private var freedTail: BlockID = -1
    private var blockForHash = HashKeyedTable<BlockID>(filler: -1)
    private(set) var numFree: Int
    /// Blocks held out of use by KV pressure (chaos: memory taken by something else), as a
    /// request holds blocks, so usage counts them and the scheduler cannot have them.
    private var pressure: [BlockID] = []
    /// How many blocks pressure should hold; taken as they come free.
    private var pressureTarget = 0

    private struct Block {
        /// The full block of tokens it holds for the prefix cache, when `cached`.
        var hash: UInt64 = 0
        var refCount: Int32 = 1
        // The freed queue's links.
        var next: BlockID = -1
        var previous: BlockID = -1
        var cached = false
    }

    init(numBlocks: Int) {
        precondition(numBlocks >= 2, "a KV cache needs at least two blocks")
        self.numBlocks = numBlocks
        // Reserved, not written: pages are touched as blocks are first taken.
        blocks = []
        blocks.reserveCapacity(numBlocks)
        blocks.append(Block())  // the null block, never free
        fresh = 1
        numFree = numBlocks - 1
    }

    /// Fraction of blocks held by requests, as `vllm:kv_cache_usage_perc`.
    var usage: Double { 1.0 - Double(numFree) / Double(numBlocks - 1) }

    /// The cached block holding exactly these tokens, if any.
    func cachedBlock(for hash: UInt64) -> BlockID? { blockForHash[hash] }

    func isFree(_ block: BlockID) -> Bool { Int(block) >= fresh || blocks[Int(block)].refCount == 0 }

    /// Takes a reference on a cached block, removing it from the free queue if it was there.
    mutating func touch(_ block: BlockID) {
        if blocks[Int(block)].refCount == 0 { unlink(block) }
        blocks[Int(block)].refCount += 1
    }

    /// Takes `count` blocks from the head of the free queue, evicting their cached contents.
    mutating func allocate(_ count: Int, into table: inout [BlockID]) {
        precondition(count <= numFree)
        for _ in 0..<count {
            if fresh < numBlocks {
                table.append(BlockID(fresh))
                blocks.append(Block())
                fresh += 1
                numFree -= 1
                continue
            }
            let block = freedHead
            unlink(block)
            if blocks[Int(block)].cached {
                // A block and its hash are registered together and only this drops them.
                blockForHash.removeValue(forKey: blocks[Int(block)].hash)
                blocks[Int(block)].cached = false
            }
            blocks[Int(block)].refCount = 1
            table.append(block)
        }
    }

    /// Drops one reference per block; blocks reaching zero join the tail of the free queue.
    /// Callers pass tables in reverse so a request's last blocks are evicted first, as vLLM does.
    mutating func release<C: Collection<BlockID>>(_ blocks: C) {
        for block in blocks {
            self.blocks[Int(block)].refCount -= 1
            if self.blocks[Int(block)].refCount == 0 { pushBack(block) }
        }
    }

    /// Brings the hash map's slots for these hashes into the cache before they are registered.
    mutating func preload(_ hashes: some Collection<UInt64>) { blockForHash.preload(hashes) }

    /// Records that `block` holds the full block of tokens with this hash.
    mutating func register(_ block: BlockID, hash: UInt64) {
        guard !blocks[Int(block)].cached else { return }
        let registered = blockForHash.update(hash, default: block) { $0 == block }
        guard registered else { return }  // another block holds these tokens already
        blocks[Int(block)].hash = hash
        blocks[Int(block)].cached = true
    }

    /// Keeps `usable` of the usable blocks for requests and holds the rest, taking free blocks
    /// now and the others as requests free them. 1 lifts the pressure.
    mutating func setPressure(usable fraction: Double) {
        let usable = numBlocks - 1
        pressureTarget = usable - Int((Double(usable) * min(max(fraction, 0), 1)).rounded(.down))
        applyPressure()
    }

    /// Takes free blocks for pressure up to its target, or gives back what is above it.
    mutating func applyPressure() {
        var held = pressure
        if held.count < pressureTarget, numFree > 0 { allocate(min(numFree, pressureTarget - held.count), into: &held) }
        if held.count > pressureTarget {
            release(held[pressureTarget...].reversed())
            held.removeLast(held.count - pressureTarget)
        }
        pressure = held
    }

    private mutating func pushBack(_ block: BlockID) {
        blocks[Int(block)].previous = freedTail
        blocks[Int(block)].next = -1
        if freedTail >= 0 { blocks[Int(freedTail)].next = block } else { freedHead = block }
        freedTail = block
        numFree += 1
    }

    private mutating func unlink(_ block: BlockID) {
        let before = blocks[Int(block)].previous
        let after = blocks[Int(block)].next
        if before >= 0 { blocks[Int(before)].next = after } else { freedHead = after }
        if after >= 0 { blocks[Int(after)].previous = before } else { freedTail = before }
        numFree -= 1
    }
}

/// The chained hash of one full block: its parent block's hash, its tokens, and the adapter
/// (a LoRA changes the KV values, so the same tokens under another adapter must not match).
struct BlockHasher {
    private var state: UInt64

    init(parent: UInt64) { state = parent ^ 0x9E37_79B9_7F4A_7C15 }

    /// One multiply and a fold per token (the full finaliser runs once per block): hashing every
    /// token through `mix` was a tenth of a simulated fleet's engine time.
    mutating func combine(_ token: Int) {
        state = (state ^ UInt64(bitPattern: Int64(token))) &* 0x9E37_79B9_7F4A_7C15
        state ^= state >> 29
    }

    func finalize(adapter: String?) -> UInt64 {
        var hash = state
        if let adapter {
            for byte in adapter.utf8 { hash = mix(hash ^ UInt64(byte)) }
        }
        return mix(hash)
    }
}

/// A 64-bit finaliser (splitmix64's), good enough to make block-hash collisions negligible.
@inline(__always)
func mix(_ value: UInt64) -> UInt64 {
    var z = value &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
