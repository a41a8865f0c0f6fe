/*-------------------------------------------------------------------------
 *
 * secret.c
 *	  Encryption of the registry's secrets (password, sslpassword).
 *
 * Owns the key file named by netrun_pool.secret_key_file and the blob
 * format stored in netrun_pool.registry.secret:
 *
 *	  version (1 byte, = 1) | nonce (12) | ciphertext | GCM tag (16)
 *
 * AES-256-GCM with the key SHA-256(file contents), and the connection name
 * as associated data, so a blob copied to another row does not decrypt.
 * It must never put a secret, the key, or the file's contents into an
 * error message, a log line or memory that outlives the call.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "storage/fd.h"
#include "utils/builtins.h"

#include "netrun_pool.h"

#define SECRET_VERSION		1
#define SECRET_NONCE_LEN	12
#define SECRET_TAG_LEN		16
#define SECRET_KEY_LEN		32
#define SECRET_MIN_FILE_LEN 32
#define SECRET_MAX_FILE_LEN NETRUN_KEY_FILE_MAX
#define SECRET_HEADER_LEN	(1 + SECRET_NONCE_LEN)

/* netrun_pool.secret_key_file */
char	   *netrun_secret_key_file = NULL;

bool
netrun_secret_key_configured(void)
{
	return netrun_secret_key_file != NULL && netrun_secret_key_file[0] != '\0';
}

/*
 * Read a key file into buf (which must hold SECRET_MAX_FILE_LEN bytes):
 * it must be readable only by the server's user and hold between
 * SECRET_MIN_FILE_LEN and SECRET_MAX_FILE_LEN - 1 bytes.  Errors name the
 * file ("what" says which: "secret key file", "tenant key file"), never
 * its contents.  Returns the length.  Shared by the registry's secrets and
 * the tenant tokens (tenant.c).
 */
int
netrun_read_key_file(const char *path, const char *what, char *buf)
{
	struct stat st;
	int			fd;
	ssize_t		len;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open %s \"%s\": %m", what, path)));
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat %s \"%s\": %m", what, path)));
	if (st.st_mode & (S_IRWXG | S_IRWXO))
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is accessible by group or others", what, path),
				 errhint("Run chmod 600 on it.")));
	}
	len = read(fd, buf, SECRET_MAX_FILE_LEN);
	CloseTransientFile(fd);
	if (len < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read %s \"%s\": %m", what, path)));
	if (len < SECRET_MIN_FILE_LEN || len >= SECRET_MAX_FILE_LEN)
	{
		explicit_bzero(buf, SECRET_MAX_FILE_LEN);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" must hold between %d and %d bytes",
						what, path, SECRET_MIN_FILE_LEN, SECRET_MAX_FILE_LEN - 1),
				 errhint("Create it with: openssl rand -hex 32 > FILE")));
	}
	return (int) len;
}

/* Read the secret key file and derive the 32-byte key. */
static void
secret_load_key(unsigned char *key)
{
	char		buf[SECRET_MAX_FILE_LEN];
	int			len;
	unsigned int keylen = 0;
	bool		ok;

	if (!netrun_secret_key_configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("netrun_pool.secret_key_file is not set")));

	len = netrun_read_key_file(netrun_secret_key_file, "secret key file", buf);
	ok = EVP_Digest(buf, len, key, &keylen, EVP_sha256(), NULL) == 1 &&
		keylen == SECRET_KEY_LEN;
	explicit_bzero(buf, sizeof(buf));
	if (!ok)
		elog(ERROR, "could not derive the netrun_pool secret key");
}

/* The associated data: binds a blob to the connection it belongs to. */
static char *
secret_aad(const char *name, int *len)
{
	char	   *aad = psprintf("netrun_pool:%s", name);

	*len = strlen(aad);
	return aad;
}

bytea *
netrun_secret_encrypt(const char *plain, const char *name)
{
	unsigned char key[SECRET_KEY_LEN];
	int			plain_len = strlen(plain);
	int			aad_len;
	char	   *aad = secret_aad(name, &aad_len);
	bytea	   *blob;
	unsigned char *out;
	EVP_CIPHER_CTX *ctx;
	int			n = 0;
	int			fin = 0;
	bool		ok;

	secret_load_key(key);

	blob = palloc(VARHDRSZ + SECRET_HEADER_LEN + plain_len + SECRET_TAG_LEN);
	SET_VARSIZE(blob, VARHDRSZ + SECRET_HEADER_LEN + plain_len + SECRET_TAG_LEN);
	out = (unsigned char *) VARDATA(blob);
	out[0] = SECRET_VERSION;
	if (!pg_strong_random(out + 1, SECRET_NONCE_LEN))
	{
		explicit_bzero(key, sizeof(key));
		elog(ERROR, "could not generate a random nonce");
	}

	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_LEN, NULL) == 1 &&
		EVP_EncryptInit_ex(ctx, NULL, NULL, key, out + 1) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &n, (unsigned char *) aad, aad_len) == 1 &&
		EVP_EncryptUpdate(ctx, out + SECRET_HEADER_LEN, &n,
						  (const unsigned char *) plain, plain_len) == 1 &&
		EVP_EncryptFinal_ex(ctx, out + SECRET_HEADER_LEN + n, &fin) == 1 &&
		n + fin == plain_len &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_LEN,
							out + SECRET_HEADER_LEN + plain_len) == 1;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	pfree(aad);
	if (!ok)
		elog(ERROR, "could not encrypt a netrun_pool secret");
	return blob;
}

/*
 * Decrypt a blob.  Returns a palloc'd NUL-terminated string, or NULL if
 * the blob does not decrypt with the current key (wrong key, altered blob,
 * blob of another connection).  The caller must explicit_bzero and pfree
 * the result as soon as it is used.
 */
char *
netrun_secret_decrypt(const bytea *blob, const char *name)
{
	unsigned char key[SECRET_KEY_LEN];
	const unsigned char *in = (const unsigned char *) VARDATA_ANY(blob);
	int			in_len = VARSIZE_ANY_EXHDR(blob);
	int			ct_len = in_len - SECRET_HEADER_LEN - SECRET_TAG_LEN;
	int			aad_len;
	char	   *aad;
	char	   *plain;
	EVP_CIPHER_CTX *ctx;
	int			n = 0;
	int			fin = 0;
	bool		ok;

	if (ct_len < 0 || in[0] != SECRET_VERSION)
		return NULL;

	secret_load_key(key);
	aad = secret_aad(name, &aad_len);
	plain = palloc(ct_len + 1);

	ctx = EVP_CIPHER_CTX_new();
	ok = ctx != NULL &&
		EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_LEN, NULL) == 1 &&
		EVP_DecryptInit_ex(ctx, NULL, NULL, key, in + 1) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &n, (unsigned char *) aad, aad_len) == 1 &&
		EVP_DecryptUpdate(ctx, (unsigned char *) plain, &n,
						  in + SECRET_HEADER_LEN, ct_len) == 1 &&
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SECRET_TAG_LEN,
							(void *) (in + SECRET_HEADER_LEN + ct_len)) == 1 &&
		EVP_DecryptFinal_ex(ctx, (unsigned char *) plain + n, &fin) == 1;
	EVP_CIPHER_CTX_free(ctx);
	explicit_bzero(key, sizeof(key));
	pfree(aad);

	if (!ok || n + fin != ct_len)
	{
		explicit_bzero(plain, ct_len + 1);
		pfree(plain);
		return NULL;
	}
	plain[ct_len] = '\0';
	return plain;
}
