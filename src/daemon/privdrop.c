/* SPDX-License-Identifier: MIT */
/* Privilege drop to `user = NAME`; see privdrop.h for the order of things. */
#include "daemon/privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"
#include "conf/config.h"

bool privdrop_wanted(const struct config *c)
{
	return c->user && *c->user && geteuid() == 0;
}

int privdrop_prepare(const struct config *c)
{
	if (!c->user || !*c->user)
		return 0;
	struct passwd *pw = getpwnam(c->user);
	if (!pw) {
		fprintf(stderr, "tern: %s:%u: user: no such user \"%s\"\n", c->path,
			config_line(c, "user"), c->user);
		return -1;
	}
	if (geteuid() != 0) {
		if (pw->pw_uid == geteuid())
			return 0;
		fprintf(stderr, "tern: %s:%u: user = %s needs tern to be started as root\n",
			c->path, config_line(c, "user"), c->user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		fprintf(stderr, "tern: %s:%u: user = %s is root; name an unprivileged user\n",
			c->path, config_line(c, "user"), c->user);
		return -1;
	}
	/* data_dir's parent belongs to the admin; data_dir itself to the user.
	 * Only data_dir is ever chowned, through an fd opened without following
	 * symlinks, and only when root has just created it. */
	bool created = mkdir(c->data_dir, 0700) == 0;
	if (!created && errno != EEXIST) {
		if (mkdir_p(c->data_dir, 0700) < 0) {
			fprintf(stderr, "tern: %s:%u: data_dir: cannot create %s: %s\n", c->path,
				config_line(c, "data_dir"), c->data_dir, strerror(errno));
			return -1;
		}
		created = true;
	}
	int fd = open(c->data_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "tern: data_dir %s: %s\n", c->data_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (created && fchown(fd, pw->pw_uid, pw->pw_gid) < 0) {
		fprintf(stderr, "tern: chown %s: %s\n", c->data_dir, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	if (!created && st.st_uid != pw->pw_uid) {
		fprintf(stderr,
			"tern: data_dir %s belongs to uid %u, not to user %s; hand it over with: "
			"chown -R %s: %s\n",
			c->data_dir, (unsigned)st.st_uid, c->user, c->user, c->data_dir);
		return -1;
	}
	return 0;
}

int privdrop_now(const struct config *c)
{
	if (!privdrop_wanted(c))
		return 0;
	struct passwd *pw = getpwnam(c->user);
	if (!pw) {
		fprintf(stderr, "tern: no such user %s\n", c->user);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		fprintf(stderr, "tern: cannot switch to user %s: %s\n", c->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0) {
		fprintf(stderr, "tern: privilege drop to %s did not stick\n", c->user);
		return -1;
	}
	return 0;
}
