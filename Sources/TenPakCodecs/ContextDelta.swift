import TenPakFormat

/// Adapter between chunk encodings and the exponent-context entropy coder in Entropy/.
enum ContextDelta {
    static func supports(_ element: ElementType) -> Bool { false }

    static func encode(target: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, element: ElementType) -> [UInt8] {
        preconditionFailure("context-delta is not available in this build")
    }

    static func decode(payload: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, element: ElementType,
                       into output: UnsafeMutableRawBufferPointer) throws {
        throw CodecError("context-delta payloads are not supported by this build")
    }
}
