/// A Responses API answer kept so that a later request can continue the conversation with `previous_response_id`
/// (`store: true`), on any gateway instance that shares the store.
///
/// The JSON columns are kept as the text the gateway wrote, never parsed by the store: it neither needs their
/// contents nor should it renormalise numbers or key order of what the client is later given back.
public struct StoredResponse: Sendable, Equatable {
    /// The response id as returned to the client, `resp_…`; unique across the store.
    public var id: String
    /// The id (not the hash) of the API key that made the response; nil for an anonymous caller when authentication
    /// is off. Only a caller with the same key id, or likewise anonymous, can read or delete it.
    public var keyID: String?
    /// Unix seconds when the response was made.
    public var createdAt: Double
    /// Unix seconds after which the response is neither returned nor continued, and retention may delete it.
    /// Set once at save time (`createdAt` + `response-retention`): changing the option later leaves rows as they are.
    public var expiresAt: Double
    /// The model the response names (`response.model`).
    public var model: String
    /// JSON array of the whole conversation's input items in the Responses wire format, earlier turns included
    /// (`[{"type":"message","role":"user","content":[…]}, {"type":"function_call_output",…}, …]`), so that
    /// continuing needs only this row and not the chain of earlier responses.
    public var inputItems: String
    /// JSON array of this turn's output items (`response.output`: messages, reasoning, function calls).
    public var outputItems: String
    /// The full Response object as returned to the client (`{"id":"resp_…","object":"response",…}`), for
    /// `GET /v1/responses/{id}`.
    public var response: String

    public init(
        id: String, keyID: String?, createdAt: Double, expiresAt: Double, model: String, inputItems: String,
        outputItems: String, response: String
    ) {
        self.id = id
        self.keyID = keyID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.model = model
        self.inputItems = inputItems
        self.outputItems = outputItems
        self.response = response
    }
}
