#!/usr/bin/env bash
# log "message": timestamped line on stderr with the calling script's name.
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') ($(basename "$0")) $*" >&2; }
warn_synthetic() {
  log "################################################################"
  log "# NO REAL CORPUS GIVEN: using the SYNTHETIC look-alike corpus. #"
  log "# Numbers are not comparable to published results.            #"
  log "################################################################"
}
