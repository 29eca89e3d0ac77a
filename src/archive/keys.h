/*-------------------------------------------------------------------------
 *
 * keys.h
 *		Envelope keys of the archive: key-encryption keys from files, data
 *		keys wrapped beside the objects they encrypt.
 *
 * Only the archive part calls these; archive.h documents the formats.
 *
 * IDENTIFICATION
 *		src/archive/keys.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef BACKUP_OFFLINE_KEYS_H
#define BACKUP_OFFLINE_KEYS_H

#include "archive/archive.h"	/* BO_DATA_KEY_LENGTH comes from format.h */

/* what bo_key_unwrap found when it could not unwrap */
typedef struct BoKeyProblem
{
	char	   *message;		/* errmsg text */
	char	   *detail;			/* errdetail text */
} BoKeyProblem;

extern void bo_keys_init(void);
extern bool bo_kek_id_is_valid(const char *kek_id);
extern void bo_kek_id_check(const char *kek_id, const char *field);
extern const char *bo_default_kek_id(void);
extern void bo_kek_require(const char *kek_id);
extern char *bo_key_id_hex(const uint8 *key_id);

extern unsigned char *bo_data_key_new(uint8 *key_id);
extern void bo_data_key_free(unsigned char *data_key);

extern char *bo_key_wrap_name(const char *object_name, const char *kek_id);
extern void bo_key_wrap_put(BoStorage *storage, const char *object_name,
							const char *kek_id, const uint8 *key_id,
							const unsigned char *data_key);
extern List *bo_key_wraps(BoStorage *storage, const char *object_name);
extern unsigned char *bo_key_unwrap(BoStorage *storage, const char *object_name,
									const uint8 *key_id, BoKeyProblem *problem);

#endif							/* BACKUP_OFFLINE_KEYS_H */
