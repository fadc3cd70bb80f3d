#include <stdio.h>
int main(void)
{
        puts("membersync: under construction");
        return 0;
}
