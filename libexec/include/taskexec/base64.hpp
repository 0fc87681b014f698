// Base64 (RFC 4648, standard alphabet, with padding): how the protocol
// carries the bytes of an exec session's stdin and output in JSON.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace taskexec {

/// Append the base64 form of `bytes` to `out`.
void base64_append(std::string& out, std::string_view bytes);
std::string base64_encode(std::string_view bytes);

/// The bytes of `text`, or nullopt when it is not base64: a length that is
/// not a multiple of 4, a character outside the alphabet, or padding
/// anywhere but at the end. Whitespace is not allowed.
std::optional<std::string> base64_decode(std::string_view text);
/// As base64_decode, appending the bytes to `out`; false (and `out` as it
/// was) when `text` is not base64.
bool base64_decode_append(std::string& out, std::string_view text);

}  // namespace taskexec
