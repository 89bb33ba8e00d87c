import DarkroomWeights

extension PromptEncoder {
    /// The embeddings by name for the tokenizer (vector counts) and the text encoder (vectors). An
    /// embedding made for another family (an SD 2.x embedding, 1024 wide, on SD 1.x's 768; an SDXL one) is refused,
    /// naming its file and the widths (`TextualInversionEmbedding.perTextEncoder`); A1111 skips such files.
    func embeddingTables() throws -> (counts: [String: Int], vectors: [String: TextualInversionEmbedding]) {
        var counts: [String: Int] = [:], vectors: [String: TextualInversionEmbedding] = [:]
        for embedding in embeddings {
            do {
                vectors[embedding.name] = try embedding.perTextEncoder([(family.textEncoders[0], textEncoder.config.width)],
                                                                       family: family.name)[0]
            } catch let error as TextualInversionEmbedding.Error {
                throw PipelineError.embedding(error)
            }
            counts[embedding.name] = embedding.count
        }
        return (counts, vectors)
    }
}
