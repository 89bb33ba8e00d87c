import DarkroomWeights

extension PromptEncoder {
    /// The embeddings by name for the tokenizer (vector counts) and the text encoder (vectors). An
    /// embedding of another width than the text encoder's token embeddings (an SD 2.x embedding, 1024
    /// wide, on SD 1.x's 768) is refused, naming its file and both widths; A1111 skips such files.
    func embeddingTables() throws -> (counts: [String: Int], vectors: [String: TextualInversionEmbedding]) {
        var counts: [String: Int] = [:], vectors: [String: TextualInversionEmbedding] = [:]
        for embedding in embeddings {
            guard embedding.width == textEncoder.config.width else {
                throw PipelineError.invalidValue(field: "embedding", value: "'\(embedding.file)' has width \(embedding.width)",
                                                 expected: "the text encoder's width \(textEncoder.config.width) (an embedding made for another model family)")
            }
            counts[embedding.name] = embedding.count
            vectors[embedding.name] = embedding
        }
        return (counts, vectors)
    }
}
