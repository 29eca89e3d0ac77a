#!/usr/bin/env bash
# Care-like test data for the archive benchmark and the large round-trip
# scenario: JSON lines of home-care visit notes (ids, times, vital signs,
# free-text notes picked from phrase lists) with varying numbers, so zstd
# compresses it about as well as real visit records and no two lines repeat.
# Deterministic for a given seed.
#
#   test/bench/archive/care_data.sh BYTES [SEED] > file
set -eu
BYTES=${1:?usage: care_data.sh BYTES [SEED]}
SEED=${2:-42}

# awk runs until head has enough and closes the pipe; its write error is
# hidden (2>/dev/null) and its status ignored (no pipefail here)
awk -v seed="$SEED" 'BEGIN {
	srand(seed);
	n = split("Patient resting comfortably|Wound dressing changed, no signs of infection|Medication given as prescribed|Assisted with personal care and mobility|Reports mild pain in the lower back|Family member present during the visit|Appetite reduced, encouraged fluids|Blood glucose checked before lunch|Skin intact, pressure areas checked|Walked to the kitchen with a frame|Slept poorly, will review at next visit|Catheter care completed|Compression stockings applied|Refused breakfast, ate a small lunch|Confused in the morning, settled later", note, "|");
	m = split("Anna Berg|Jonas Keller|Maria Rossi|Lena Hoffmann|Tom Nguyen|Sara Lind|Ali Demir|Eva Novak", nurse, "|");
	k = split("home visit|wound care|medication round|personal care|night check|telehealth call", kind, "|");
	for (i = 1; ; i++) {
		d = int(rand() * 28) + 1; h = int(rand() * 24); mi = int(rand() * 60);
		printf("{\"visitId\":%d,\"patientId\":\"P-%06d\",\"organizationId\":\"org-%03d\",\"nurse\":\"%s\",\"kind\":\"%s\",\"start\":\"2024-%02d-%02dT%02d:%02d:00Z\",\"durationMinutes\":%d,\"vitals\":{\"systolic\":%d,\"diastolic\":%d,\"pulse\":%d,\"temperature\":%.1f,\"spo2\":%d},\"painScore\":%d,\"fluidsMl\":%d,\"note\":\"%s; %s.\",\"version\":%d}\n",
			i, int(rand() * 200000), int(rand() * 40), nurse[int(rand() * m) + 1], kind[int(rand() * k) + 1],
			int(rand() * 12) + 1, d, h, mi, 10 + int(rand() * 80),
			100 + int(rand() * 60), 60 + int(rand() * 35), 55 + int(rand() * 50), 36 + rand() * 2.5, 90 + int(rand() * 10),
			int(rand() * 11), int(rand() * 25) * 100, note[int(rand() * n) + 1], note[int(rand() * n) + 1], 1 + int(rand() * 5));
	}
}' 2>/dev/null | head -c "$BYTES"
