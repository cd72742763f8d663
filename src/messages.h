/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Journal MESSAGE_IDs, one per kind of event. docs/sqlvigil.catalog explains
 * each of them (journalctl -x); tests check that the two lists agree. The
 * SQLVIGIL_EVENT= field carries the same kind as a word, so both
 *   journalctl MESSAGE_ID=<id>   and   journalctl SQLVIGIL_EVENT=checkpoint
 * work. Never change an ID once released; add a new one instead.
 */

#define SQLVIGIL_MESSAGE_STARTED "8cc4fa5c844a4d54b1ceebf52488943e"
#define SQLVIGIL_MESSAGE_READY "1ca5414d9fe842bcb6693d6324f35d65"
#define SQLVIGIL_MESSAGE_HEALTH "071157879bff4004816d0b2cbfe74e68"
#define SQLVIGIL_MESSAGE_CHECKPOINT "968a43c588374ee39cf1cdac6b028e15"
#define SQLVIGIL_MESSAGE_VACUUM "e3965b11f566410f8249e1e72a225213"
#define SQLVIGIL_MESSAGE_ANALYZE "839a0962244b4fdfbd3678acb64302c7"
#define SQLVIGIL_MESSAGE_INTEGRITY "d10e9971ba0e49d3893e9cc230cac9b2"
#define SQLVIGIL_MESSAGE_STARVATION "d11689dde629458fa210eead8db4d651"
#define SQLVIGIL_MESSAGE_STOPPING "aa36bd36702f47c994ae8bf6f277578e"
#define SQLVIGIL_MESSAGE_CONFIG_REJECTED "31558d0150cf4c098b8dc45b192366f8"
#define SQLVIGIL_MESSAGE_RELOADED "fdddf745c3384f5396d4e7289edd6ac8"
#define SQLVIGIL_MESSAGE_PRAGMA "90d0b2cfc42146e4b9ce7eef1aeb14d9"
#define SQLVIGIL_MESSAGE_START_FAILED "5df84a8d5d1d4f3e8981e4b5b698369b"
#define SQLVIGIL_MESSAGE_FILE_FAULT "926eff0a0d8d4f938cb4d1dd3853e354"
#define SQLVIGIL_MESSAGE_FILE_RESCUED "6aeb7fe315274ac181a32f70d01fa779"
#define SQLVIGIL_MESSAGE_STALE_WAL "74e29fce2abd4811b61051d154724e9a"
#define SQLVIGIL_MESSAGE_SQLITE_SKEW "1e59a643484f4ddf811ca04b5a81e1f5"
