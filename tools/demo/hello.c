/* The demo registry's "hello" package: a static x86_64 program, so it runs in
 * the guest whatever libc the guest has (none). */
#include <stdio.h>
#include <sys/utsname.h>

int main(int argc, char **argv)
{
	struct utsname u;

	if (uname(&u) != 0)
		return 1;
	printf("Hello from an lwpkg package, running on %s %s (%s)%s%s\n",
	       u.sysname, u.release, u.machine, argc > 1 ? ", for " : "", argc > 1 ? argv[1] : "");
	return 0;
}
