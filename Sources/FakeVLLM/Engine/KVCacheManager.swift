/// A request's KV blocks over the shared pool, as vLLM V1's `KVCacheManager`: looks up the
/// longest cached prefix, allocates blocks for the tokens a step computes, registers full blocks
/// in the prefix cache, and frees a request's blocks (last first, so they are evicted first).
struct KVCacheManager {
    private(set) var pool: BlockPool
    let blockSize: Int
    let prefixCaching: Bool

    init(numBlocks: Int, blockSize: Int, prefixCaching: Bool) {
        pool = BlockPool(numBlocks: numBlocks)
        self.blockSize = blockSize
        self.prefixCaching = prefixCaching
    }

    var usage: Double { pool.usage }

    /// Chaos: only `usable` of the blocks stay available to requests (see `BlockPool`).
    mutating func setPressure(usable fraction: Double) { pool.setPressure(usable: fraction) }

    /// The longest run of cached full blocks at the start of the request's tokens, keeping at
    /// least one token to compute (vLLM recomputes the last one to get logits), and how many
    /// cached tokens that rule makes the step compute again.
    func cachedPrefix(_ state: inout RequestState) -> (hits: [BlockPool.BlockID], recomputed: Int) {
        guard prefixCaching else { return ([], 0) }
        extendHashes(&state)
        let maxBlocks = (state.numTokens - 1) / blockSize
        var hits: [BlockPool.BlockID] = []
        for blockIndex in 0..<min(maxBlocks, state.blockHashes.count) {
            guard let block = pool.cachedBlock(for: state.blockHashes[blockIndex]) else { break }
            hits.append(block)
        }
        let cappedBlockCached = hits.count == maxBlocks && maxBlocks < state.blockHashes.count
            && pool.cachedBlock(for: state.blockHashes[maxBlocks]) != nil
        return (hits, cappedBlockCached ? blockSize : 0)
    }

    /// Gives the request blocks for `newTokens` more tokens (after any cached hits) and for
    /// `lookahead` tokens after them; false when the pool cannot and still keep `reserve`
    /// blocks free, leaving everything as it was.
    /// V0's block manager on a waiting request (`can_allocate`): its whole sequence, with
    /// `reserve` blocks kept free, fits never (more than the cache holds), later, or now.
    enum Admission { case never, later, now }

    func admission(_ state: RequestState, reserve: Int) -> Admission {
        let needed = (state.numTokens + blockSize - 1) / blockSize
        // Block 0 is vLLM's null block.
        if needed + reserve > pool.numBlocks - 1 { return .never }
        return needed - state.blockTable.count + reserve <= pool.numFree ? .now : .later
    }

    mutating func allocate(
        _ state: inout RequestState, newTokens: Int, cachedHits: [BlockPool.BlockID] = [], reserve: Int = 0, lookahead: Int = 0
    ) -> Bool {
        let computed = state.numComputedTokens + cachedHits.count * blockSize
        let neededBlocks = (computed + newTokens + lookahead + blockSize - 1) / blockSize
        let fresh = max(0, neededBlocks - state.blockTable.count - cachedHits.count)
        var revived = 0
        for block in cachedHits where pool.isFree(block) { revived += 1 }
        guard fresh + revived + reserve <= pool.numFree else { return false }
        // Most calls are a decode token inside the request's last block: no hits, nothing to take.
        if !cachedHits.isEmpty {
            for block in cachedHits { pool.touch(block) }
            state.blockTable.append(contentsOf: cachedHits)
            state.numComputedTokens = computed
            state.numRegisteredBlocks = max(state.numRegisteredBlocks, cachedHits.count)
        }
        if fresh > 0 { pool.allocate(fresh, into: &state.blockTable) }
        // Like vLLM, blocks are findable as soon as they are allocated for tokens this step
        // computes, so an identical prompt admitted in the same step shares them.
        cacheFullBlocks(&state, upTo: min(computed + newTokens, state.numTokens))
        return true
    }

    /// Returns every block of the request to the pool; cached ones stay findable until evicted.
    mutating func free(_ state: inout RequestState) {
        pool.release(state.blockTable.reversed())
        pool.applyPressure()
        state.blockTable.removeAll(keepingCapacity: true)
        state.numRegisteredBlocks = 0
    }

    /// Registers the request's full blocks up to `tokens` in the prefix cache.
    private mutating func cacheFullBlocks(_ state: inout RequestState, upTo tokens: Int) {
        guard prefixCaching else { return }
        let computedBlocks = min(tokens / blockSize, state.blockTable.count)
        guard computedBlocks > state.numRegisteredBlocks else { return }
        extendHashes(&state)
        let newlyFull = state.numRegisteredBlocks..<min(computedBlocks, state.blockHashes.count)
        // A prefill fills many blocks at once.
        if newlyFull.count > 1 { pool.preload(state.blockHashes[newlyFull]) }
        for index in newlyFull {
            pool.register(state.blockTable[index], hash: state.blockHashes[index])
        }
        state.numRegisteredBlocks = computedBlocks
    }

    /// Chained hashes of every full block of the request's tokens so far.
    private func extendHashes(_ state: inout RequestState) {
        let fullBlocks = state.numTokens / blockSize
        while state.blockHashes.count < fullBlocks {
            let index = state.blockHashes.count
            var hasher = BlockHasher(parent: state.blockHashes.last ?? 0)
            state.forEachToken(in: (index * blockSize)..<((index + 1) * blockSize)) { hasher.combine($0) }
            state.blockHashes.append(hasher.finalize(adapter: state.request.lora?.name))
        }
    }
}
