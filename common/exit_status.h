// Exit statuses shared by every subcommand. They follow the s6 conventions so
// that a service's `finish` script can act on them.
#pragma once

namespace vmwarden::exit_status {

inline constexpr int kOk = 0;
inline constexpr int kFailure = 1;     // a runtime failure; s6 may retry
inline constexpr int kUsage = 2;       // bad flag or bad input; nothing changed
inline constexpr int kPermanent = 125; // s6: permanent failure, do not restart
inline constexpr int kSignalBase = 128;  // 128+N: the main service died of signal N

}  // namespace vmwarden::exit_status
