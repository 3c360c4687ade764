import TenPakFormat

/// Adapter between chunk encodings and the exponent-context entropy coder in Entropy/.
enum ContextDelta {
    static func supports(_ element: ElementType) -> Bool {
        switch element.layout {
        case .f32: return element.width == 4
        case .bf16, .f16: return element.width == 2
        case .none: return false
        }
    }

    static func encode(target: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, element: ElementType) -> [UInt8] {
        precondition(supports(element))
        return ContextDeltaCodec.encode(target: target, base: base, layout: element.layout)
    }

    static func decode(payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, element: ElementType,
                       into output: UnsafeMutableRawBufferPointer) throws {
        guard supports(element) else { throw CodecError("context-delta payload for an element type it does not support") }
        do {
            try ContextDeltaCodec.decode(payload: payload, base: base, layout: element.layout, output: output)
        } catch {
            throw CodecError("context-delta: \(error)")
        }
    }
}
