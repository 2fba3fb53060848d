#!/usr/bin/env bash
# Kaldi-style option parsing for recipes. Declare the options between two marker lines, one
# NAME=DEFAULT a line with its description as a comment, and source this file after them:
#
#   # begin options
#   stage=0                    # first stage to run
#   nj=4                       # parallel jobs
#   # Training                 (a comment line on its own is printed as a heading)
#   seeds="1 2 3"              # training seeds
#   # end options
#   . "$EMOTK_ROOT/local/parse_options.sh"
#
# Then "--stop-stage 5" or "--stop-stage=5" sets stop_stage=5 for declared options only; any other
# option is a one-line error, and an option whose default is true or false takes only true or false.
# "--help" prints the script's header comment and the declared options with their comments and
# defaults. Parsing stops at the first argument that is not an option (positional arguments).
# A script without the markers (not yet converted) accepts every variable it has already set.
_po_script=${BASH_SOURCE[1]:-$0}
[ -f "$_po_script" ] || _po_script=$(basename "$_po_script")   # recipes cd to their own directory
_po_prog=$(basename "$_po_script")

_po_block() {  # the declaration lines between the markers
  sed -n '/^# begin options/,/^# end options/{/^# \(begin\|end\) options/d;p;}' "$_po_script"
}

if grep -q '^# begin options' "$_po_script" 2>/dev/null; then
  _po_names=" $(_po_block | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | tr '\n' ' ')"
else
  _po_names=""
fi

_po_help() {
  echo "Usage: $_po_prog [options]"
  sed -n '2,${/^#/!q;s/^# \{0,1\}//;p;}' "$_po_script"   # the header comment
  echo
  echo "Options (--name VALUE or --name=VALUE) [default]:"
  local line name rest comment
  if [ -n "$_po_names" ]; then
    _po_block | while IFS= read -r line; do
      case "$line" in
        "#"*) line=${line#"#"}; echo "  ${line# }" ;;
        [A-Za-z_]*=*)
          name=${line%%=*}; rest=${line#*=}; comment=""
          if [[ "$rest" =~ [[:space:]]#[[:space:]]?(.*)$ ]]; then comment=${BASH_REMATCH[1]}; fi
          printf '  --%-22s %s[%s]\n' "${name//_/-}" "${comment:+$comment }" "${!name}" ;;
      esac
    done
  else
    grep -E '^[a-z_]+=' "$_po_script" | while IFS='=' read -r name rest; do
      echo "  --${name//_/-} $rest"
    done
  fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h) _po_help; exit 0 ;;
    --*=*) _po_opt="${1%%=*}"; _po_value="${1#*=}"; shift ;;
    --?*)
      _po_opt="$1"
      [ $# -ge 2 ] || { echo "$_po_prog: option $1 needs a value" >&2; exit 1; }
      _po_value="$2"; shift 2 ;;
    *) break ;;
  esac
  _po_var="${_po_opt#--}"; _po_var="${_po_var//-/_}"
  if [ -n "$_po_names" ]; then
    case "$_po_names" in
      *" $_po_var "*) ;;
      *) echo "$_po_prog: unknown option $_po_opt ($_po_prog --help lists the options)" >&2; exit 1 ;;
    esac
  elif ! [[ "$_po_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || ! declare -p "$_po_var" >/dev/null 2>&1; then
    echo "$_po_prog: unknown option $_po_opt ($_po_prog --help lists the options)" >&2; exit 1
  fi
  case "${!_po_var}" in
    true|false)
      case "$_po_value" in true|false) ;;
        *) echo "$_po_prog: option $_po_opt takes true or false, not '$_po_value'" >&2; exit 1 ;;
      esac ;;
  esac
  printf -v "$_po_var" '%s' "$_po_value"
done
unset -f _po_block _po_help
unset _po_script _po_prog _po_names _po_opt _po_value _po_var
