// fmt's compiled part, built once for the whole tree. Debian ships fmt as a
// shared library only; compiling it in keeps vmwarden free of one more
// library to map at every start (and lets it link statically), and compiling
// it here once, instead of in every file (fmt's header-only mode), halves
// what each file costs to compile.
#include <fmt/format-inl.h>

// The templates that fmt's headers declare but define only in format-inl.h,
// for the types the headers use them with.
FMT_BEGIN_NAMESPACE
namespace detail {
template auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template locale_ref::locale_ref(const std::locale& loc);
template auto locale_ref::get<std::locale>() const -> std::locale;
template auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template auto thousands_sep_impl(locale_ref) -> thousands_sep_result<wchar_t>;
template auto decimal_point_impl(locale_ref) -> char;
template auto decimal_point_impl(locale_ref) -> wchar_t;
}  // namespace detail
FMT_END_NAMESPACE
